// The demo's verdict: how long it took, how little the server had to send compared with
// one copy per node, how much the nodes gave each other, and each node's own result.
import type { NodeState } from './agents.ts'
import type { Verification } from './verify-targets.ts'
import { formatMB, formatSeconds } from './units.ts'

/** Differences listed per failed node; the rest are counted. */
const MAX_DIFFERENCES_SHOWN = 3

export interface NodeResult {
  node: string
  exitCode: number | undefined
  seconds: number | undefined
  downloadSeconds: number | undefined
  fromServerBytes: number
  fromPeersBytes: number
  uploadedBytes: number
  leaveReason: string | undefined
  verified: boolean
  differences: number
  problems: string[]
}

export interface DemoSummary {
  ok: boolean
  nodeCount: number
  imageRef: string
  /** the tarball the swarm carries (the torrent's length) */
  imageBytes: number
  uploadLimitBytesPerSecond: number
  /** the demo from start to verdict, making the image included */
  totalSeconds: number
  /** first agent started to last agent exited (nodes stay a little to seed) */
  deploySeconds: number
  /** first agent started to the last node holding the whole image */
  allDownloadedSeconds: number | undefined
  /** what the server alone would need at its upload limit: one copy per node */
  unicastSeconds: number
  serverBytesSent: number
  serverToImageRatio: number
  peerBytes: number
  nodes: NodeResult[]
}

export interface SummaryInput {
  imageRef: string
  imageBytes: number
  uploadLimitBytesPerSecond: number
  demoStartedAt: number
  deployStartedAt: number
  deployEndedAt: number
  serverBytesSent: number
  nodes: NodeState[]
  verifications: Array<Verification | undefined>
}

export function buildSummary (input: SummaryInput): DemoSummary {
  const nodes = input.nodes.map((s, i) => nodeResult(s, input.verifications[i]))
  const downloadEnds = input.nodes.map(s => s.downloadSeconds === undefined ? NaN : s.startedAt + s.downloadSeconds * 1000)
  const allDownloaded = downloadEnds.every(Number.isFinite) ? (Math.max(...downloadEnds) - input.deployStartedAt) / 1000 : undefined
  return {
    ok: nodes.every(n => n.exitCode === 0 && n.verified) && Number.isFinite(input.serverBytesSent),
    nodeCount: nodes.length,
    imageRef: input.imageRef,
    imageBytes: input.imageBytes,
    uploadLimitBytesPerSecond: input.uploadLimitBytesPerSecond,
    totalSeconds: (Date.now() - input.demoStartedAt) / 1000,
    deploySeconds: (input.deployEndedAt - input.deployStartedAt) / 1000,
    allDownloadedSeconds: allDownloaded,
    unicastSeconds: nodes.length * input.imageBytes / input.uploadLimitBytesPerSecond,
    serverBytesSent: input.serverBytesSent,
    serverToImageRatio: input.serverBytesSent / input.imageBytes,
    peerBytes: nodes.reduce((sum, n) => sum + n.fromPeersBytes, 0),
    nodes
  }
}

function nodeResult (s: NodeState, v: Verification | undefined): NodeResult {
  const problems: string[] = []
  if (s.error !== undefined) problems.push(`${s.error.code}: ${s.error.message}`)
  if (v?.error !== undefined) problems.push(`verification failed: ${v.error}`)
  for (const d of v?.differences.slice(0, MAX_DIFFERENCES_SHOWN) ?? []) {
    problems.push(`${d.path}: ${d.attribute} is ${d.actual}, expected ${d.expected}`)
  }
  const extra = (v?.differences.length ?? 0) - MAX_DIFFERENCES_SHOWN
  if (extra > 0) problems.push(`... and ${extra} more differences`)
  return {
    node: s.node,
    exitCode: s.exitCode,
    // An agent that failed sends no done event: its process lifetime is the next best figure.
    seconds: s.seconds ?? (s.exitedAt === undefined ? undefined : (s.exitedAt - s.startedAt) / 1000),
    downloadSeconds: s.downloadSeconds,
    fromServerBytes: s.downloadedFromServer,
    fromPeersBytes: Math.max(0, s.downloaded - s.downloadedFromServer),
    uploadedBytes: s.uploaded,
    leaveReason: s.leaveReason,
    verified: v !== undefined && v.error === undefined && v.differences.length === 0,
    differences: v?.differences.length ?? 0,
    problems
  }
}

export function formatSummary (s: DemoSummary): string {
  const rateMB = s.uploadLimitBytesPerSecond / 1e6
  const lines = [
    '',
    `Summary: ${s.nodeCount} nodes, image ${s.imageRef} (${formatMB(s.imageBytes)}), server upload capped at ${rateMB} MB/s`,
    `  total time            ${formatSeconds(s.totalSeconds)} (demo start to verdict, making the image included)`,
    `  deployment            ${formatSeconds(s.deploySeconds)} (agents started to last agent gone; ${s.allDownloadedSeconds === undefined ? 'not every node got the image' : `every node had the image after ${formatSeconds(s.allDownloadedSeconds)}`})`,
    `  server alone          ${formatSeconds(s.unicastSeconds)} at least (${s.nodeCount} x ${formatMB(s.imageBytes)} at ${rateMB} MB/s)`,
    `  image size            ${formatMB(s.imageBytes)}`,
    `  server bytes sent     ${formatMB(s.serverBytesSent)} = ${s.serverToImageRatio.toFixed(2)} x image size (unicast: ${s.nodeCount}.00 x)`,
    `  peer-to-peer bytes    ${formatMB(s.peerBytes)} (${percent(s.peerBytes, s.peerBytes + sumFromServer(s))} of what the nodes received)`,
    ''
  ]
  const header = ['NODE', 'EXIT', 'TIME', 'DOWNLOAD', 'FROM SERVER', 'FROM PEERS', 'TO PEERS', 'VERIFIED']
  const rows = s.nodes.map(n => [
    n.node,
    n.exitCode === undefined ? '-' : String(n.exitCode),
    formatSeconds(n.seconds),
    formatSeconds(n.downloadSeconds),
    formatMB(n.fromServerBytes),
    formatMB(n.fromPeersBytes),
    formatMB(n.uploadedBytes),
    n.verified ? 'yes' : 'NO'
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const align = (cells: string[]): string => '  ' + cells.map((c, i) => i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ').trimEnd()
  lines.push(align(header), ...rows.map(align), '  (TIME: until the node left the swarm; DOWNLOAD: until it held the whole image;',
    '   VERIFIED: its target does not differ from the source tree in any attribute)')
  for (const n of s.nodes) for (const p of n.problems) lines.push(`  ${n.node}: ${p}`)
  const failed = s.nodes.filter(n => !(n.exitCode === 0 && n.verified)).length
  lines.push('', s.ok
    ? `Result: all ${s.nodeCount} nodes installed and verified identical to the image.`
    : `Result: FAILED: ${failed} of ${s.nodeCount} nodes did not install a verified image.`)
  return lines.join('\n') + '\n'
}

function sumFromServer (s: DemoSummary): number {
  return s.nodes.reduce((sum, n) => sum + n.fromServerBytes, 0)
}

function percent (part: number, whole: number): string {
  return whole > 0 ? `${Math.round(part / whole * 100)}%` : '-'
}
