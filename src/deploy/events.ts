// What the agent tells the world while it works: one event type, several listeners
// (terminal, --json, the server's fleet view).
import type { Times } from '../image/times.ts'

export type Phase = 'torrent' | 'staging' | 'download' | 'seeding' | 'done' | 'failed'

export interface ProgressFigures {
  verifiedBytes: number
  length: number
  progress: number
  downloadRate: number
  uploadRate: number
  peers: number
  seeds: number
  downloaded: number
  downloadedFromServer: number
  uploaded: number
  extractedEntries: number
  hashFailures: number
}

export type DeployEvent =
  | { type: 'phase'; phase: Phase; detail?: string }
  | ({ type: 'progress'; phase: Phase } & ProgressFigures)
  | { type: 'warning'; message: string }
  | ({ type: 'done'; phase: 'done'; seconds: number; downloadSeconds: number; peakRssBytes: number; leaveReason: string } & ProgressFigures)
  | { type: 'error'; phase: 'failed'; code: string; message: string }

export type EventSink = (event: DeployEvent) => void

/** How a download went, whatever its transport. */
export interface DeployResult {
  /** Root times from the image, when extraction kept the .si-incomplete marker (overrides follow). */
  rootTimes?: Times
  seconds: number
  downloadSeconds: number
  figures: ProgressFigures
  leaveReason: string
}
