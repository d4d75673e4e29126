// `si-server monitor`: watches a server's fleet API from a terminal (a serial console,
// an ssh session). On a terminal it redraws a table in place; otherwise it writes one
// line per node that changed, so a log or a pipe gets the story without escapes.
import { SiError } from '../errors.ts'
import { httpRequest } from '../http-client.ts'
import type { NodePage, NodeSummary } from './fleet.ts'
import { changeLine, fleetTable } from './fleet-table.ts'

const REQUEST_TIMEOUT_MS = 10_000
/** One page of the fleet API at most; a bigger fleet is read page by page. */
const PAGE_SIZE = 5_000
const MAX_PAGE_BYTES = 64 * 1024 * 1024
/** A terminal that says nothing of its size gets this. */
const DEFAULT_SIZE = { columns: 120, rows: 40 }
/** Without a terminal, a node's progress is written at each tenth. */
const PROGRESS_STEPS = 10
const CLEAR = '\u001b[H\u001b[2J'
const HIDE_CURSOR = '\u001b[?25l'
const SHOW_CURSOR = '\u001b[?25h'

export interface MonitorOptions {
  server: string
  intervalSeconds: number
  once: boolean
  out: NodeJS.WriteStream | NodeJS.WritableStream
  signal: AbortSignal
}

/** Every node changed after update counter `since` (all of them without it), page by page. */
export async function fetchFleet (server: string, since: number | undefined, signal?: AbortSignal): Promise<{ seq: number; nodes: NodeSummary[] }> {
  const nodes: NodeSummary[] = []
  let seq = 0
  for (let offset = 0; ; offset += PAGE_SIZE) {
    const url = `${server.replace(/\/+$/, '')}/api/nodes?sort=node&limit=${PAGE_SIZE}&offset=${offset}${since !== undefined ? `&since=${since}` : ''}`
    const reply = await httpRequest(url, { timeoutMs: REQUEST_TIMEOUT_MS, maxBytes: MAX_PAGE_BYTES, signal, name: server })
    if (reply.status !== 200) throw new SiError('ERR_HTTP_STATUS', `${url}: ${reply.status} ${reply.body.toString('utf8').slice(0, 200)}`)
    const page = JSON.parse(reply.body.toString('utf8')) as NodePage
    if (offset === 0) seq = page.seq
    nodes.push(...page.nodes)
    if (page.nodes.length === 0 || offset + page.nodes.length >= page.total) return { seq, nodes }
  }
}

function isTerminal (out: MonitorOptions['out']): out is NodeJS.WriteStream {
  return (out as NodeJS.WriteStream).isTTY === true
}

export async function runMonitor (o: MonitorOptions): Promise<void> {
  const tty = isTerminal(o.out)
  const known = new Map<string, NodeSummary>()
  let seq: number | undefined
  if (tty && !o.once) o.out.write(HIDE_CURSOR)
  try {
    while (!o.signal.aborted) {
      const size = tty ? { columns: (o.out as NodeJS.WriteStream).columns ?? DEFAULT_SIZE.columns, rows: (o.out as NodeJS.WriteStream).rows ?? DEFAULT_SIZE.rows } : DEFAULT_SIZE
      let problem: string | undefined
      try {
        const fresh = await fetchFleet(o.server, seq, o.signal)
        seq = fresh.seq
        for (const n of fresh.nodes) {
          if (!tty && !o.once && isNews(known.get(n.node), n)) o.out.write(changeLine(n, size.columns) + '\n')
          known.set(n.node, n)
        }
      } catch (err) {
        if (o.signal.aborted) return
        if (o.once) throw err
        problem = `${o.server} does not answer: ${(err as Error).message}`
      }
      if (o.once || tty) {
        const table = fleetTable([...known.values()], { width: size.columns, rows: o.once ? Number.MAX_SAFE_INTEGER : size.rows - 3, server: o.server, now: Date.now() })
        if (problem !== undefined) table.splice(1, 0, problem)
        o.out.write((tty && !o.once ? CLEAR : '') + table.join('\n') + '\n')
      } else if (problem !== undefined) o.out.write(`${new Date().toISOString().slice(11, 19)} ${problem}\n`)
      if (o.once) return
      await sleep(o.intervalSeconds * 1000, o.signal)
    }
  } finally {
    if (tty && !o.once) o.out.write(SHOW_CURSOR)
  }
}

/** A line is worth writing for a new node, a new step, or each tenth of the image. */
function isNews (before: NodeSummary | undefined, now: NodeSummary): boolean {
  if (before === undefined || before.phase !== now.phase || before.step !== now.step || before.run !== now.run) return true
  return Math.floor((before.progress ?? 0) * PROGRESS_STEPS) !== Math.floor((now.progress ?? 0) * PROGRESS_STEPS)
}

function sleep (ms: number, signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    const timer = setTimeout(done, ms)
    function done (): void { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    signal.addEventListener('abort', done, { once: true })
  })
}
