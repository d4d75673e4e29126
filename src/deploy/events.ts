// What the agent tells the world while it works: one event type, several listeners
// (terminal, --json, the server's fleet view).
import type { Times } from '../image/times.ts'
import type { LastPiece } from '../swarm/requester.ts'

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
  /** the torrent being fetched, once known: the fleet view names the image by its info hash */
  | { type: 'image'; name: string; infoHash: string; length: number }
  /** lastPiece (swarm transport): when the last piece was verified and who sent it, for the benchmark's timeline */
  | ({ type: 'done'; phase: 'done'; seconds: number; downloadSeconds: number; peakRssBytes: number; leaveReason: string; lastPiece?: LastPiece } & ProgressFigures)
  /** step and log: an install says where it failed and sends its console's tail */
  | { type: 'error'; phase: 'failed'; code: string; message: string; step?: string; log?: string }

export type EventSink = (event: DeployEvent) => void

/** Where a download's bytes came from, for logs: the server's share and the peers'. */
export function describeSources (f: Pick<ProgressFigures, 'downloaded' | 'downloadedFromServer'>): string {
  return `${f.downloaded} bytes downloaded (${f.downloadedFromServer} from the server, ${f.downloaded - f.downloadedFromServer} from peers)`
}

/**
 * Any event an agent command emits: a download's, or the steps around it (install's
 * phases, its final verdict, a failure with its step and console log). The reporter and
 * the renderers read them by `type`; install-events.ts narrows them for the install.
 */
export type AgentEvent =
  | DeployEvent
  | { type: 'phase'; phase: string; detail?: string }
  | ({ type: 'installed'; phase: 'installed'; image: string; seconds: number; firmware?: string; finish?: string; uptimeSeconds?: number } & Partial<ProgressFigures>)

/** How a download went, whatever its transport. */
export interface DeployResult {
  /** Root times from the image, when extraction kept the .si-incomplete marker (overrides follow). */
  rootTimes?: Times
  seconds: number
  downloadSeconds: number
  figures: ProgressFigures
  leaveReason: string
}
