// The operators' console over HTTP: nodes post their reports; the dashboard, the
// console monitor and scripts read the fleet in pages, one node in detail, the live
// series, the history; Prometheus scrapes /metrics. Every answer is bounded (a page
// of nodes, a node's bounded detail), and every address has a request budget.
import type http from 'node:http'
import { SiError, describeError } from '../errors.ts'
import { REPORT_LIMITS, parseNodeReport, type NodeReport } from '../formats/node-report.ts'
import { REPORT_AUTH_HEADER } from '../formats/node-auth.ts'
import { isNodeName } from '../formats/node-name.ts'
import { SORT_KEYS, type ListQuery, type SortKey } from './fleet.ts'
import { METRICS_CONTENT_TYPE, type ReportOutcome } from './metrics.ts'
import { dashboardAsset } from './dashboard/assets.ts'
import { parseSince } from './console-config.ts'
import type { OperatorsConsole } from './operators-console.ts'

/** Deployments one history read returns at most. */
const MAX_HISTORY_PAGE = 10_000

type Reply = { status: number; body?: unknown; headers?: http.OutgoingHttpHeaders }


/** Answers the dashboard's files and the console's reads; false when the request is none of them. */
export async function routeConsole (c: OperatorsConsole, req: http.IncomingMessage, res: http.ServerResponse, url: URL, parts: string[]): Promise<boolean> {
  const method = req.method ?? 'GET'
  const read = method === 'GET' || method === 'HEAD'
  if (read && (parts.length === 0 || (parts.length === 2 && parts[0] === 'dashboard'))) {
    const asset = dashboardAsset(parts.length === 0 ? 'index.html' : parts[1])
    if (asset === undefined) return false
    res.writeHead(200, { 'content-type': asset.contentType, 'content-length': asset.body.length, 'cache-control': 'no-cache' })
    res.end(method === 'HEAD' ? undefined : asset.body)
    return true
  }
  const route = read ? readRoute(parts) : undefined
  if (route === undefined) return false
  if (!withinBudget(c, req, res)) return true
  try {
    c.metrics.countFleetRead(route)
    send(res, answerRead(c, route, parts, url.searchParams))
  } catch (err) {
    if (!(err instanceof SiError && err.code === 'ERR_INVALID_ARGUMENT')) throw err
    send(res, { status: 400, body: { error: err.message, code: 'ERR_INVALID_ARGUMENT' } })
  }
  return true
}

/** POST /api/nodes/NODE/events: a node's report, answered with the interval for its next one. */
/**
 * `isAuthentic` checks the report's bytes against the node's credential (node-credentials.ts):
 * nobody else can mark a node done or failed.
 */
export async function receiveReport (c: OperatorsConsole, node: string, req: http.IncomingMessage, res: http.ServerResponse, isAuthentic: (node: string, body: Buffer) => boolean): Promise<void> {
  if (!withinBudget(c, req, res)) { c.metrics.countReport('rate-limited'); return }
  const reply = await readReport(c, node, clientAddress(req), req, isAuthentic)
  send(res, reply.answer)
  c.metrics.countReport(reply.outcome)
}

/** Takes one request from the address's budget; answers 429 when it is spent. */
function withinBudget (c: OperatorsConsole, req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const address = clientAddress(req)
  const budget = c.limiter.take(address)
  if (budget.ok) return true
  send(res, { status: 429, body: { error: `too many requests from ${address}: retry in ${budget.retryAfterSeconds} s`, code: 'ERR_RATE_LIMITED' }, headers: { 'retry-after': String(budget.retryAfterSeconds) } })
  req.resume()
  return false
}

function readRoute (parts: string[]): string | undefined {
  if (parts.length === 1 && parts[0] === 'metrics') return 'metrics'
  if (parts[0] !== 'api') return undefined
  if (parts.length === 2 && (parts[1] === 'nodes' || parts[1] === 'fleet' || parts[1] === 'history')) return parts[1]
  if (parts.length === 3 && parts[1] === 'nodes') return 'node'
  return undefined
}

function answerRead (c: OperatorsConsole, route: string, parts: string[], q: URLSearchParams): Reply {
  switch (route) {
    case 'metrics':
      return { status: 200, body: c.metricsText(), headers: { 'content-type': METRICS_CONTENT_TYPE } }
    case 'nodes':
      return { status: 200, body: c.fleet.page(listQuery(q)) }
    case 'node': {
      const detail = isNodeName(parts[2]) ? c.fleet.get(parts[2]) : undefined
      return detail === undefined ? { status: 404, body: { error: `no report from node ${JSON.stringify(parts[2])}` } } : { status: 200, body: detail }
    }
    case 'fleet': {
      const tally = c.fleet.tally()
      return {
        status: 200,
        body: {
          nodes: c.fleet.size,
          seq: c.fleet.updateCounter,
          intervalSeconds: c.fleet.intervalSeconds(),
          byPhase: tally.byPhase,
          images: [...tally.byImagePhase.keys()].filter(i => i !== '').sort(),
          bytesFromServer: tally.bytesFromServer,
          bytesFromPeers: tally.bytesFromPeers,
          series: c.fleet.series(numberParam(q, 'since', 0, Number.MAX_SAFE_INTEGER) ?? 0)
        }
      }
    }
    case 'history': {
      if (c.history === undefined) return { status: 503, body: { error: 'no deployment history on this server (see its log)', code: 'ERR_HISTORY' } }
      const since = q.get('since')
      let sinceDate: Date | undefined
      if (since !== null) {
        try { sinceDate = parseSince()(since) } catch (err) { throw new SiError('ERR_INVALID_ARGUMENT', `since=${JSON.stringify(since)}: ${(err as Error).message}`) }
      }
      return { status: 200, body: c.history.list({ image: q.get('image') ?? undefined, since: sinceDate, limit: numberParam(q, 'limit', 1, MAX_HISTORY_PAGE) ?? 1000 }) }
    }
  }
  return { status: 404, body: { error: 'no such route' } }
}

function listQuery (q: URLSearchParams): ListQuery {
  const sort = q.get('sort') ?? undefined
  if (sort !== undefined && !(SORT_KEYS as readonly string[]).includes(sort)) throw new SiError('ERR_INVALID_ARGUMENT', `sort=${JSON.stringify(sort)}: expected one of ${SORT_KEYS.join(', ')}`)
  const order = q.get('order')
  if (order !== null && order !== 'asc' && order !== 'desc') throw new SiError('ERR_INVALID_ARGUMENT', `order=${JSON.stringify(order)}: expected asc or desc`)
  return {
    phase: q.get('phase') ?? undefined,
    image: q.get('image') ?? undefined,
    group: q.get('group') ?? undefined,
    search: q.get('search') ?? undefined,
    since: numberParam(q, 'since', 0, Number.MAX_SAFE_INTEGER),
    sort: sort as SortKey | undefined,
    descending: order === 'desc',
    offset: numberParam(q, 'offset', 0, Number.MAX_SAFE_INTEGER),
    limit: numberParam(q, 'limit', 1, Number.MAX_SAFE_INTEGER)
  }
}

function numberParam (q: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const text = q.get(name)
  if (text === null) return undefined
  const n = Number(text)
  if (text.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new SiError('ERR_INVALID_ARGUMENT', `${name}=${JSON.stringify(text)}: expected an integer from ${min}`)
  return n
}

async function readReport (c: OperatorsConsole, node: string, address: string, req: http.IncomingMessage, isAuthentic: (node: string, body: Buffer) => boolean): Promise<{ answer: Reply; outcome: ReportOutcome }> {
  const refuse = (status: number, outcome: ReportOutcome, error: string, code: string): { answer: Reply; outcome: ReportOutcome } => ({ answer: { status, body: { error, code } }, outcome })
  if (!isNodeName(node)) { req.resume(); return refuse(400, 'invalid', `invalid node name ${JSON.stringify(node)}`, 'ERR_INVALID_REPORT') }
  const body = await readBody(req, REPORT_LIMITS.bodyBytes)
  if (body === 'too-large') return refuse(413, 'too-large', `report larger than ${REPORT_LIMITS.bodyBytes} bytes`, 'ERR_INVALID_REPORT')
  if (body === undefined) return refuse(400, 'invalid', 'report cut short', 'ERR_INVALID_REPORT')
  if (!isAuthentic(node, body)) return refuse(401, 'unauthorized', `report refused: not signed with node ${node}'s credential (header ${REPORT_AUTH_HEADER}; GET /api/nodes/${node}/credential)`, 'ERR_UNAUTHORIZED')
  let report: NodeReport
  try {
    report = parseNodeReport(JSON.parse(body.toString('utf8')))
  } catch (err) {
    return refuse(400, 'invalid', err instanceof SyntaxError ? 'a report must be a JSON object' : describeError(err), 'ERR_INVALID_REPORT')
  }
  const recorded = c.fleet.record(node, address, report)
  // One address past its share of names is told to slow down (429, like the rate limit:
  // it is that address's doing); a fleet full of nodes still installing is the server's (503).
  if (!recorded.ok) return refuse(recorded.reason === 'address-full' ? 429 : 503, recorded.reason, recorded.message, 'ERR_FLEET_FULL')
  return { answer: { status: 200, body: { intervalSeconds: recorded.intervalSeconds } }, outcome: 'accepted' }
}

/** The body, 'too-large' past `max` bytes (declared or received), undefined when cut short. */
function readBody (req: http.IncomingMessage, max: number): Promise<Buffer | 'too-large' | undefined> {
  return new Promise(resolve => {
    if (Number(req.headers['content-length'] ?? 0) > max) { req.resume(); resolve('too-large'); return }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > max) { req.removeAllListeners('data'); req.resume(); resolve('too-large'); return }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(size > max ? 'too-large' : Buffer.concat(chunks)))
    req.on('error', () => resolve(undefined))
    req.on('aborted', () => resolve(undefined))
  })
}

function clientAddress (req: http.IncomingMessage): string {
  return (req.socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '')
}

function send (res: http.ServerResponse, reply: Reply): void {
  if (res.headersSent) { res.end(); return }
  const text = typeof reply.body === 'string' ? reply.body : reply.body === undefined ? '' : JSON.stringify(reply.body)
  res.writeHead(reply.status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...reply.headers })
  res.end(res.req.method === 'HEAD' ? undefined : text)
}
