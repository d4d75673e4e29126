// What the person running the demo watches: on a terminal, a table redrawn in place
// (node, phase, %, bar, rates, peers); in a log or a pipe, where cursor movement would
// be garbage, a status line every few seconds plus one line per notable event.
import type { NodeState } from './agents.ts'
import { formatMB } from './units.ts'

export const REDRAW_INTERVAL_MS = 250
export const PLAIN_INTERVAL_MS = 2_000
const BAR_WIDTH = 20
/** Latest node events (complete, left, failed) kept under the table. */
const MAX_NOTES = 4
const DEFAULT_COLUMNS = 100
const COLUMN_GAP = '  '
/** Node, phase, %, bar: never dropped, however narrow the terminal. */
const MIN_COLUMNS = 4
const ESC = '\x1b['
const COLORS: Record<string, string> = { done: '32', failed: '31', seeding: '36' }

export interface LiveViewSource {
  title: string
  nodes: NodeState[]
  imageBytes: number
  startedAt: number
  /** the server's latest serverBytesSent, undefined until first read */
  serverBytesSent: () => number | undefined
}

export class LiveView {
  private readonly out: NodeJS.WriteStream
  private readonly src: LiveViewSource
  private readonly tty: boolean
  private readonly color: boolean
  private readonly notes: string[] = []
  private timer: NodeJS.Timeout | undefined
  private drawnLines = 0

  constructor (out: NodeJS.WriteStream, src: LiveViewSource) {
    this.out = out
    this.src = src
    this.tty = out.isTTY === true
    this.color = this.tty && process.env.NO_COLOR === undefined
  }

  start (): void {
    if (this.tty) {
      this.out.write(`${ESC}?25l`) // the cursor would flicker across the table
      this.timer = setInterval(() => this.redraw(), REDRAW_INTERVAL_MS)
      this.redraw()
    } else {
      this.out.write(`${this.stamp()} ${this.src.title}\n`)
      this.timer = setInterval(() => this.out.write(this.statusLine() + '\n'), PLAIN_INTERVAL_MS)
    }
  }

  /** Draws the final state once more and gives the terminal back. Safe to call twice. */
  stop (): void {
    if (this.timer === undefined) return
    clearInterval(this.timer)
    this.timer = undefined
    if (this.tty) {
      this.redraw()
      this.out.write(`${ESC}?25h`)
    } else {
      this.out.write(this.statusLine() + '\n')
    }
  }

  /** A node changed phase, failed or warned. */
  onNodeEvent (s: NodeState): void {
    const text = describeEvent(s)
    if (text === undefined) return
    const line = `${this.stamp()} ${s.node}: ${text}`
    if (this.tty) {
      this.notes.push(line)
      this.notes.splice(0, Math.max(0, this.notes.length - MAX_NOTES))
    } else {
      this.out.write(line + '\n')
    }
  }

  private stamp (): string {
    return `[${((Date.now() - this.src.startedAt) / 1000).toFixed(1).padStart(5)} s]`
  }

  private totals (): { server: string; peers: number; done: number } {
    const sent = this.src.serverBytesSent()
    const peers = this.src.nodes.reduce((sum, s) => sum + Math.max(0, s.downloaded - s.downloadedFromServer), 0)
    const done = this.src.nodes.filter(s => s.phase === 'done').length
    const server = sent === undefined ? 'server sent ?' : `server sent ${formatMB(sent)} (${(sent / this.src.imageBytes).toFixed(2)} x image)`
    return { server, peers, done }
  }

  private statusLine (): string {
    const t = this.totals()
    const nodes = this.src.nodes.map(s => `${s.node} ${s.phase === 'download' ? `${Math.floor(s.progress * 100)}%` : s.phase}`).join(' ')
    return `${this.stamp()} ${t.server}, peers exchanged ${formatMB(t.peers)}, done ${t.done}/${this.src.nodes.length} | ${nodes}`
  }

  private redraw (): void {
    const t = this.totals()
    const header = ['NODE', 'PHASE', '%', 'PROGRESS'.padEnd(BAR_WIDTH), 'DOWN MB/s', 'UP MB/s', 'PEERS', 'FROM SERVER', 'FROM PEERS']
    const rows = this.src.nodes.map(s => [
      s.node,
      s.phase,
      (s.progress * 100).toFixed(1),
      bar(s.progress),
      // The agent's rate is a moving average that lingers after the last piece: a node
      // holding the whole image is downloading nothing, whatever the average says.
      s.progress >= 1 ? '-' : (s.downloadRate / 1e6).toFixed(1),
      (s.uploadRate / 1e6).toFixed(1),
      String(s.peers),
      formatMB(s.downloadedFromServer),
      formatMB(Math.max(0, s.downloaded - s.downloadedFromServer))
    ])
    // On a narrow terminal whole columns go, from the right, rather than half of one.
    let shown = header.length
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
    const width = (n: number): number => widths.slice(0, n).reduce((sum, w) => sum + w + COLUMN_GAP.length, -COLUMN_GAP.length)
    while (shown > MIN_COLUMNS && width(shown) > this.columns()) shown--
    // Text columns left-aligned, figures right-aligned.
    const align = (cells: string[]): string => cells.slice(0, shown).map((c, i) => i <= 1 || i === 3 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(COLUMN_GAP)
    const colorPhase = (line: string, phase: string): string => {
      const code = COLORS[phase]
      return this.color && code !== undefined ? line.replace(` ${phase} `, ` ${ESC}${code}m${phase}${ESC}0m `) : line
    }
    const top = [
      `${this.stamp()} ${this.src.title}`,
      `${t.server}   peers exchanged ${formatMB(t.peers)}   done ${t.done}/${this.src.nodes.length}`,
      '',
      align(header)
    ].map(l => this.fit(l))
    const table = rows.map((r, i) => colorPhase(this.fit(align(r)), this.src.nodes[i].phase))
    const notes = this.notes.length > 0 ? ['', ...this.notes.map(l => this.fit(l))] : []
    const lines = [...top, ...table, ...notes]
    const up = this.drawnLines > 0 ? `${ESC}${this.drawnLines}F` : ''
    this.out.write(up + lines.map(l => `${ESC}2K${l}`).join('\n') + `\n${ESC}J`)
    this.drawnLines = lines.length
  }

  /** Writing in the last column makes some terminals wrap: keep one free. */
  private columns (): number {
    return (this.out.columns ?? DEFAULT_COLUMNS) - 1
  }

  /** A wrapped line would throw off the count of lines to move up on the next redraw. */
  private fit (line: string): string {
    const columns = this.columns()
    return line.length > columns ? line.slice(0, columns) : line
  }
}

function bar (progress: number): string {
  const filled = Math.max(0, Math.min(BAR_WIDTH, Math.round(progress * BAR_WIDTH)))
  return '#'.repeat(filled) + '.'.repeat(BAR_WIDTH - filled)
}

function describeEvent (s: NodeState): string | undefined {
  if (s.error !== undefined && s.phase === 'failed') return `failed: ${s.error.code}: ${s.error.message}`
  switch (s.phase) {
    case 'seeding': return `installed, seeding for the others (${formatMB(s.downloadedFromServer)} from the server, ${formatMB(s.downloaded - s.downloadedFromServer)} from peers)`
    case 'done': return `left the swarm after ${s.seconds?.toFixed(1) ?? '?'} s (${s.leaveReason ?? 'no reason given'})`
    default: return undefined
  }
}
