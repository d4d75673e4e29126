// The fleet as text, for `si-server monitor`: one line per node, failures on top, then
// the nodes furthest from done; and one line for what changed, when the output is not a
// terminal. And the deployment history as a table, for `si-server history`. Every text a node sent is cut to the column and stripped of control
// characters, so a node cannot draw on the administrator's terminal.
import { FLEET_PHASES, type FleetPhase } from '../formats/node-report.ts'
import { compareNodeNames } from '../formats/node-name.ts'
import type { NodeSummary } from './fleet.ts'
import type { Deployment } from './history.ts'

/** Failures first, then in the order a node goes through its phases. */
const ATTENTION_ORDER: readonly FleetPhase[] = ['failed', ...FLEET_PHASES.filter(p => p !== 'failed')]
const BAR_WIDTH = 12
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g

/** Failures on top, then by phase, the least advanced first, then by name. */
export function byAttention (a: NodeSummary, b: NodeSummary): number {
  return (ATTENTION_ORDER.indexOf(a.phase) - ATTENTION_ORDER.indexOf(b.phase)) ||
    ((a.progress ?? 0) - (b.progress ?? 0)) ||
    compareNodeNames(a.node, b.node)
}

export function printable (text: string | undefined, width: number): string {
  const t = (text ?? '').replace(CONTROL, ' ')
  return t.length <= width ? t : t.slice(0, Math.max(0, width - 1)) + '…'
}

export function humanBytes (n: number | undefined): string {
  if (n === undefined) return '-'
  const units = ['B', 'K', 'M', 'G', 'T']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v.toFixed(i === 0 || v >= 100 ? 0 : 1)}${units[i]}`
}

function bar (progress: number | undefined): string {
  const p = Math.min(1, Math.max(0, progress ?? 0))
  const filled = Math.round(p * BAR_WIDTH)
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${(p * 100).toFixed(1).padStart(5)}%`
}

/** What the last column says: the error of a failed node, else its step. */
function remark (n: NodeSummary): string {
  if (n.error !== undefined) return `${n.error.code}: ${n.error.message}`
  return [n.step, n.detail].filter(s => s !== undefined && s !== '').join(': ')
}

const COLUMNS = [
  { title: 'NODE', width: 16, cell: (n: NodeSummary) => n.node },
  { title: 'PHASE', width: 11, cell: (n: NodeSummary) => n.phase },
  { title: 'PROGRESS', width: BAR_WIDTH + 9, cell: (n: NodeSummary) => bar(n.progress) },
  { title: 'DOWN/s', width: 7, cell: (n: NodeSummary) => humanBytes(n.downloadRate), right: true },
  { title: 'UP/s', width: 7, cell: (n: NodeSummary) => humanBytes(n.uploadRate), right: true },
  { title: 'SERVER', width: 7, cell: (n: NodeSummary) => humanBytes(n.bytesFromServer), right: true },
  { title: 'PEERS', width: 7, cell: (n: NodeSummary) => humanBytes(n.bytesFromPeers), right: true },
  { title: 'IMAGE', width: 14, cell: (n: NodeSummary) => n.image ?? '-' }
]

function line (cells: string[], rest: string, width: number): string {
  const text = cells.map((c, i) => {
    const col = COLUMNS[i]
    const t = printable(c, col.width)
    return col.right === true ? t.padStart(col.width) : t.padEnd(col.width)
  }).join(' ') + ' ' + rest
  return printable(text, width).trimEnd()
}

/** The table, at most `rows` lines of nodes, each at most `width` characters. */
export function fleetTable (nodes: NodeSummary[], opts: { width: number; rows: number; server: string; now: number }): string[] {
  const counts = new Map<string, number>()
  for (const n of nodes) counts.set(n.phase, (counts.get(n.phase) ?? 0) + 1)
  const summary = FLEET_PHASES.filter(p => counts.has(p)).map(p => `${p} ${counts.get(p) ?? 0}`).join(', ')
  const sorted = [...nodes].sort(byAttention)
  const lines = [
    printable(`${new Date(opts.now).toISOString().slice(11, 19)} ${opts.server}: ${nodes.length} nodes${summary !== '' ? ` (${summary})` : ''}`, opts.width),
    line(COLUMNS.map(c => c.title), 'STEP / ERROR', opts.width)
  ]
  const room = Math.max(1, opts.rows)
  const shown = sorted.length > room ? sorted.slice(0, room - 1) : sorted
  for (const n of shown) lines.push(line(COLUMNS.map(c => c.cell(n)), printable(remark(n), opts.width), opts.width))
  if (shown.length < sorted.length) lines.push(`… ${sorted.length - shown.length} more nodes (a taller terminal shows more)`)
  return lines
}

/** One line for a node that changed, for logs and serial consoles. */
export function changeLine (n: NodeSummary, width: number): string {
  const stamp = new Date(n.updatedAt).toISOString().slice(11, 19)
  return line(COLUMNS.map(c => c.cell(n)), printable(remark(n), width), width).replace(/^/, `${stamp} `)
}

const HISTORY_COLUMNS: Array<{ title: string; cell: (d: Deployment) => string; right?: boolean }> = [
  { title: 'STARTED', cell: d => new Date(d.startedAt).toISOString().slice(0, 19).replace('T', ' ') },
  { title: 'NODE', cell: d => d.node },
  { title: 'IMAGE', cell: d => d.image ?? '-' },
  { title: 'GROUP', cell: d => d.group ?? '-' },
  { title: 'SECONDS', cell: d => d.endedAt !== null ? ((d.endedAt - d.startedAt) / 1000).toFixed(1) : '-', right: true },
  { title: 'OUTCOME', cell: d => d.outcome },
  { title: 'STEP', cell: d => d.step ?? '-' },
  { title: 'FROM-SERVER', cell: d => humanBytes(d.bytesFromServer), right: true },
  { title: 'FROM-PEERS', cell: d => humanBytes(d.bytesFromPeers), right: true },
  { title: 'ERROR', cell: d => d.errorCode !== null ? `${d.errorCode}: ${d.errorMessage ?? ''}` : '' }
]
/** The error column is cut here: the whole message is in --json. */
const HISTORY_ERROR_WIDTH = 100

/** `si-server history` as a table, columns as wide as their widest cell. */
export function historyTable (rows: Deployment[]): string {
  const cells = rows.map(d => HISTORY_COLUMNS.map(c => printable(c.cell(d), HISTORY_ERROR_WIDTH)))
  const widths = HISTORY_COLUMNS.map((c, i) => Math.max(c.title.length, ...cells.map(r => r[i].length)))
  const format = (r: string[]): string => r.map((t, i) => HISTORY_COLUMNS[i].right === true ? t.padStart(widths[i]) : t.padEnd(widths[i])).join('  ').trimEnd()
  return [format(HISTORY_COLUMNS.map(c => c.title)), ...cells.map(format)].join('\n') + '\n'
}
