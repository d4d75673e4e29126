// The server's HTTP face: image list, torrents (with this server as tracker and web seed),
// the payload with byte ranges, the same for overrides under /overrides/, the tracker,
// and the fleet's reports. Every request is answered, never thrown: a malformed one gets
// a 4xx naming what was wrong. What a node
// acts on is signed with the repository key: each torrent carries a signed statement of
// its image and info hash, plans and the image list a signature header over their bytes.
import http from 'node:http'
import { createReadStream } from 'node:fs'
import { SiError, describeError, isSiError } from '../errors.ts'
import { PAYLOAD_FILES, TAR_FILE, type ImageRepository, type ImageVersion } from '../image/repository.ts'
import type { Compression } from '../image/compression.ts'
import { parseImageRef } from '../formats/image-ref.ts'
import { TORRENT_SIGNATURE_KEY, TORRENT_STATEMENT_KEY, collectionNoun, encodeStatement, isCollection, type Collection } from '../formats/image-statement.ts'
import { isNonce, PROOF_HEADER, REPORT_AUTH_HEADER } from '../formats/node-auth.ts'
import { SIGNATURE_HEADER, type Signer, type SignedPurpose } from '../formats/signature.ts'
import { withTrackers } from '../torrent/metainfo.ts'
import type { Tracker } from '../tracker/tracker.ts'
import { parseRange } from './range.ts'
import { receiveReport, routeConsole } from './fleet-api.ts'
import type { OperatorsConsole } from './operators-console.ts'
import type { PlanStore } from './plans.ts'
import type { ServedCollection as Served } from './catalogue.ts'
import { serveBootFile, type BootFilesOptions } from './boot-files.ts'
import { answerCredential, answerPlan, type Answer } from './node-api.ts'
import type { NodeCredentials } from './node-credentials.ts'

export const MAX_URL_LENGTH = 4096
const HOST_HEADER = /^[A-Za-z0-9.\-[\]:]{1,255}$/
const PAYLOAD_CONTENT_TYPES: Record<Compression, string> = { none: 'application/x-tar', gzip: 'application/gzip', zstd: 'application/zstd' }

export interface HttpApiOptions {
  repo: ImageRepository
  /** overrides (si-server override add), served under /overrides/ as images are under /images/; absent: none */
  overrides?: ImageRepository
  tracker: Tracker
  /** the fleet's reports and views: dashboard, metrics, history */
  console: OperatorsConsole
  /** base URL written into torrents; default: the Host the client used */
  publicUrl?: string
  /** extra figures for /api/status */
  status: () => Record<string, unknown>
  /** node plans (GET /api/plan); absent: no plans served */
  plans?: PlanStore
  /** the repository key: signs torrents' statements, plans, the image list, the boot menu */
  signer: Signer
  /** node credentials: report authentication, and who may read a plan */
  credentials: NodeCredentials
  /** plans and credentials only for requests that prove themselves (si.token) */
  requireToken?: boolean
  /** kernel, initramfs and iPXE script (GET /boot/NAME); absent: no boot files */
  boot?: BootFilesOptions
  /** counts payload bytes sent over HTTP (web seed and unicast) */
  onPayloadBytes?: (bytes: number) => void
  /** whether a reference not found names versions of the collection this server served and that were removed (410) */
  wasRemoved?: (ref: string, collection: Collection) => boolean
}

export function createHttpApi (opts: HttpApiOptions): http.Server {
  const server = http.createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
    handle(opts, req, res).catch(err => sendError(res, err))
  })
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
    else socket.destroy()
  })
  server.keepAliveTimeout = 5_000
  server.headersTimeout = 10_000
  server.requestTimeout = 0 // payload downloads may be long
  return server
}

async function handle (opts: HttpApiOptions, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const rawUrl = req.url ?? '/'
  if (rawUrl.length > MAX_URL_LENGTH) return sendJson(res, 414, { error: `URL longer than ${MAX_URL_LENGTH} bytes` })
  // Origin form only: "//host/path" would be read as a URL naming another host.
  if (!rawUrl.startsWith('/') || rawUrl.startsWith('//')) return sendJson(res, 400, { error: `request target ${JSON.stringify(rawUrl.slice(0, 80))} is not a path starting with a single /` })
  if (opts.tracker.handle(req, res)) {
    opts.console.metrics.countTrackerRequest(rawUrl.startsWith('/scrape') ? 'scrape' : 'announce')
    return
  }
  const url = new URL(`http://localhost${rawUrl}`)
  const parts = url.pathname.split('/').filter(p => p !== '').map(safeDecode)
  const method = req.method ?? 'GET'

  if (await routeConsole(opts.console, req, res, url, parts)) return
  if (parts[0] === 'api') {
    if (parts.length === 1 && isRead(method)) {
      return sendJson(res, 200, { service: 'si-server', endpoints: ['/ (dashboard)', '/metrics', '/api/images', '/api/status', '/api/nodes[?phase=&image=&group=&search=&sort=&order=&offset=&limit=&since=]', '/api/nodes/NAME', '/api/fleet[?since=MS]', '/api/history[?image=&since=&limit=]', '/api/plan?node=NAME&mac=MAC&nonce=N', '/api/nodes/NAME/credential?nonce=N', '/boot/NAME', '/images/NAME[/VERSION]/image.torrent', '/images/NAME/VERSION/image.tar[.gz|.zst]', '/overrides/NAME[/VERSION]/image.torrent', '/overrides/NAME/VERSION/image.tar[.gz|.zst]', '/announce', '/scrape'] })
    }
    if (parts[1] === 'images' && parts.length === 2 && isRead(method)) return sendJson(res, 200, (await opts.repo.list()).map(v => describeVersion('images', v)), { signer: opts.signer, purpose: 'image-list' })
    if (parts[1] === 'status' && parts.length === 2 && isRead(method)) return sendJson(res, 200, opts.status())
    if (parts[1] === 'nodes' && parts.length === 4 && parts[3] === 'events' && method === 'POST') {
      const auth = headerValue(req, REPORT_AUTH_HEADER)
      return receiveReport(opts.console, parts[2], req, res, (node, body) => opts.credentials.reportIsAuthentic(node, body, auth))
    }
    const nodeApi = { plans: opts.plans, overrides: opts.overrides, credentials: opts.credentials, requireToken: opts.requireToken === true }
    const proof = headerValue(req, PROOF_HEADER)
    if (parts[1] === 'nodes' && parts.length === 4 && parts[3] === 'credential' && isRead(method)) {
      return sendAnswer(res, await answerCredential(nodeApi, parts[2], url.searchParams, proof), opts.signer)
    }
    if (parts[1] === 'plan' && parts.length === 2 && isRead(method) && opts.plans !== undefined) {
      return sendAnswer(res, await answerPlan(nodeApi, url.searchParams, proof), opts.signer)
    }
  }
  if (parts[0] === 'boot' && parts.length === 2 && isRead(method) && opts.boot !== undefined) {
    return serveBootFile(opts.boot, parts[1], baseUrl(opts, req), opts.signer, req, res)
  }
  const served = servedCollection(opts, parts[0])
  if (served !== undefined && parts.length >= 2 && parts.length <= 4) {
    // /images/NAME[/VERSION]/image.torrent and /images/NAME/VERSION/image.tar[.gz|.zst]; /overrides/ alike
    const file = parts[parts.length - 1]
    const ref = parts.length === 4 ? `${parts[1]}@${parts[2]}` : parts.length === 3 ? parts[1] : undefined
    if (ref !== undefined && file === 'image.torrent' && isRead(method)) return sendTorrent(opts, served, req, res, ref, url.searchParams)
    if (parts.length === 4 && PAYLOAD_FILES.includes(file) && isRead(method)) return sendPayload(opts, served, req, res, ref as string, file)
  }
  sendJson(res, isKnownPath(parts) ? 405 : 404, { error: `no route for ${method} ${url.pathname}` })
}

/** The collection served under /PREFIX/ (images, overrides), if any. */
function servedCollection (opts: HttpApiOptions, prefix: string | undefined): Served | undefined {
  if (prefix === undefined || !isCollection(prefix)) return undefined
  const repo = prefix === 'overrides' ? opts.overrides : opts.repo
  return repo === undefined ? undefined : { collection: prefix, repo }
}

function describeVersion (collection: Collection, v: ImageVersion): Record<string, unknown> {
  return {
    name: v.name,
    version: v.version,
    size: v.size,
    infoHash: v.infoHashHex,
    pieceLength: v.pieceLength,
    createdAt: v.createdAt,
    entries: v.entries,
    compression: v.compression,
    torrent: `/${collection}/${encodeURIComponent(v.name)}/${v.version}/image.torrent`,
    payload: payloadPath(collection, v)
  }
}

function payloadPath (collection: Collection, v: ImageVersion): string {
  return `/${collection}/${encodeURIComponent(v.name)}/${v.version}/${v.payloadName}`
}

/**
 * ?webseed=0 leaves the web seed out: a client then gets the payload over BitTorrent only.
 * ?nonce=N goes into the signed statement, with the reference as asked: the agent that
 * sent N knows the answer is fresh and about what it asked for, not a recorded older one.
 */
async function sendTorrent (opts: HttpApiOptions, served: Served, req: http.IncomingMessage, res: http.ServerResponse, ref: string, query: URLSearchParams): Promise<void> {
  parseImageRef(ref)
  const nonce = query.get('nonce') ?? undefined
  if (nonce !== undefined && !isNonce(nonce)) return sendJson(res, 400, { error: 'invalid nonce (16 to 64 base64url characters)' })
  const version = await resolveServed(opts, served, ref)
  const base = baseUrl(opts, req)
  const raw = await served.repo.readTorrent(version)
  const statement = encodeStatement({
    collection: served.collection,
    name: version.name,
    version: version.version,
    infoHash: version.infoHashHex,
    length: version.size,
    pieceLength: version.pieceLength,
    compression: version.compression,
    payload: version.payloadName,
    requested: ref,
    nonce
  })
  const body = withTrackers(raw, {
    announce: [`${base}/announce`],
    urlList: query.get('webseed') !== '0' ? [`${base}${payloadPath(served.collection, version)}`] : [],
    extra: { [TORRENT_STATEMENT_KEY]: statement, [TORRENT_SIGNATURE_KEY]: opts.signer.sign('image', statement) }
  })
  res.writeHead(200, {
    'content-type': 'application/x-bittorrent',
    'content-length': body.length,
    'content-disposition': `attachment; filename="${version.name}-${version.version}.torrent"`,
    'x-image-version': String(version.version)
  })
  res.end(req.method === 'HEAD' ? undefined : body)
}

/**
 * The payload under its own name, or under image.tar whatever its compression: old
 * clients and torrents fetched before payloads were named by compression ask for that.
 */
async function sendPayload (opts: HttpApiOptions, served: Served, req: http.IncomingMessage, res: http.ServerResponse, ref: string, file: string): Promise<void> {
  parseImageRef(ref)
  const version = await resolveServed(opts, served, ref)
  if (file !== version.payloadName && file !== TAR_FILE) {
    return sendJson(res, 404, { error: `${ref} is compressed as ${version.compression}: its payload is ${version.payloadName}`, code: 'ERR_IMAGE_NOT_FOUND' })
  }
  const range = parseRange(req.headers.range, version.size)
  if (range.kind === 'unsatisfiable') {
    res.writeHead(416, { 'content-range': `bytes */${version.size}` })
    res.end()
    return
  }
  const start = range.kind === 'range' ? range.start : 0
  const end = range.kind === 'range' ? range.end : version.size - 1
  const headers: http.OutgoingHttpHeaders = {
    'content-type': PAYLOAD_CONTENT_TYPES[version.compression],
    'accept-ranges': 'bytes',
    'content-length': end - start + 1
  }
  if (range.kind === 'range') headers['content-range'] = `bytes ${start}-${end}/${version.size}`
  res.writeHead(range.kind === 'range' ? 206 : 200, headers)
  if (req.method === 'HEAD' || version.size === 0) { res.end(); return }
  const stream = createReadStream(version.tarPath, { start, end })
  stream.on('error', () => res.destroy())
  if (opts.onPayloadBytes !== undefined) {
    const count = opts.onPayloadBytes
    stream.on('data', (chunk: string | Buffer) => count(chunk.length))
  }
  res.on('close', () => stream.destroy())
  stream.pipe(res)
}

/** A version not found that this server served and removed is ERR_IMAGE_REMOVED (410 Gone): agents stop at once. */
async function resolveServed (opts: HttpApiOptions, served: Served, ref: string): Promise<ImageVersion> {
  try {
    return await served.repo.resolve(ref)
  } catch (err) {
    if (isSiError(err, 'ERR_IMAGE_NOT_FOUND') && opts.wasRemoved?.(ref, served.collection) === true) {
      throw new SiError('ERR_IMAGE_REMOVED', `${collectionNoun(served.collection)} ${ref} was removed from this server`, { cause: err })
    }
    if (isSiError(err, 'ERR_IMAGE_NOT_FOUND') && served.collection !== 'images') {
      throw new SiError('ERR_IMAGE_NOT_FOUND', `${collectionNoun(served.collection)} "${ref}" not found (si-server override list shows those there are)`, { cause: err })
    }
    throw err
  }
}
function baseUrl (opts: HttpApiOptions, req: http.IncomingMessage): string {
  if (opts.publicUrl !== undefined) return opts.publicUrl.replace(/\/+$/, '')
  const host = req.headers.host
  if (host !== undefined && HOST_HEADER.test(host)) return `http://${host}`
  const local = req.socket.localAddress ?? '127.0.0.1'
  const hostPart = local.includes(':') && !local.startsWith('::ffff:') ? `[${local}]` : local.replace(/^::ffff:/, '')
  return `http://${hostPart}:${req.socket.localPort ?? 80}`
}

function isRead (method: string): boolean { return method === 'GET' || method === 'HEAD' }

function headerValue (req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return typeof v === 'string' ? v : undefined
}

/** A node-api answer, signed when it says what for. */
function sendAnswer (res: http.ServerResponse, a: Answer, signer: Signer): void {
  sendJson(res, a.status, a.body, a.signed !== undefined ? { signer, purpose: a.signed } : undefined)
}

function isKnownPath (parts: string[]): boolean { return parts[0] === 'api' || parts[0] === 'images' || parts[0] === 'overrides' || parts[0] === 'boot' }

function safeDecode (part: string): string {
  try { return decodeURIComponent(part) } catch { return part }
}

interface Signing { signer: Signer; purpose: SignedPurpose }

/** JSON, serialized once; with `signing`, a signature header over exactly those bytes. */
function sendJson (res: http.ServerResponse, status: number, body: unknown, signing?: Signing): void {
  if (res.headersSent) { res.end(); return }
  if (body === undefined) { res.writeHead(status); res.end(); return }
  const text = Buffer.from(JSON.stringify(body, null, 2) + '\n')
  const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json', 'content-length': text.length }
  if (signing !== undefined) headers[SIGNATURE_HEADER] = signing.signer.sign(signing.purpose, text)
  res.writeHead(status, headers)
  res.end(text)
}

function sendError (res: http.ServerResponse, err: unknown): void {
  const status = isSiError(err, 'ERR_IMAGE_NOT_FOUND') ? 404 : isSiError(err, 'ERR_IMAGE_REMOVED') ? 410 : isSiError(err, 'ERR_INVALID_IMAGE_NAME') ? 400 : 500
  sendJson(res, status, { error: err instanceof SiError ? err.message : describeError(err), code: err instanceof SiError ? err.code : 'ERR_INTERNAL' })
}
