// The server's HTTP face: image list, torrents (with this server as tracker and web seed),
// the payload with byte ranges, the tracker, and the fleet's reports. Every request is
// answered, never thrown: a malformed one gets a 4xx naming what was wrong.
import http from 'node:http'
import { createReadStream } from 'node:fs'
import { SiError, describeError, isSiError } from '../errors.ts'
import { PAYLOAD_FILES, TAR_FILE, type ImageRepository, type ImageVersion } from '../image/repository.ts'
import type { Compression } from '../image/compression.ts'
import { parseImageRef } from '../formats/image-ref.ts'
import { withTrackers } from '../torrent/metainfo.ts'
import type { Tracker } from '../tracker/tracker.ts'
import { parseRange } from './range.ts'
import { isNodeName } from '../formats/node-name.ts'
import { Fleet, MAX_EVENT_BYTES } from './fleet.ts'
import { answerPlanRequest, type PlanStore } from './plans.ts'
import { serveBootFile, type BootFilesOptions } from './boot-files.ts'

export const MAX_URL_LENGTH = 4096
const HOST_HEADER = /^[A-Za-z0-9.\-[\]:]{1,255}$/
const PAYLOAD_CONTENT_TYPES: Record<Compression, string> = { none: 'application/x-tar', gzip: 'application/gzip', zstd: 'application/zstd' }

export interface HttpApiOptions {
  repo: ImageRepository
  tracker: Tracker
  fleet: Fleet
  /** base URL written into torrents; default: the Host the client used */
  publicUrl?: string
  /** extra figures for /api/status */
  status: () => Record<string, unknown>
  /** node plans (GET /api/plan); absent: no plans served */
  plans?: PlanStore
  /** kernel, initramfs and iPXE script (GET /boot/NAME); absent: no boot files */
  boot?: BootFilesOptions
  /** counts payload bytes sent over HTTP (web seed and unicast) */
  onPayloadBytes?: (bytes: number) => void
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
  if (opts.tracker.handle(req, res)) return
  const url = new URL(`http://localhost${rawUrl}`)
  const parts = url.pathname.split('/').filter(p => p !== '').map(safeDecode)
  const method = req.method ?? 'GET'

  if (parts[0] === 'api') {
    if (parts[1] === 'images' && parts.length === 2 && isRead(method)) return sendJson(res, 200, (await opts.repo.list()).map(describeVersion))
    if (parts[1] === 'status' && parts.length === 2 && isRead(method)) return sendJson(res, 200, opts.status())
    if (parts[1] === 'nodes' && parts.length === 2 && isRead(method)) return sendJson(res, 200, opts.fleet.list())
    if (parts[1] === 'nodes' && parts.length === 4 && parts[3] === 'events' && method === 'POST') return receiveReport(opts.fleet, parts[2], req, res)
    if (parts[1] === 'plan' && parts.length === 2 && isRead(method) && opts.plans !== undefined) {
      const answer = await answerPlanRequest(opts.plans, url.searchParams)
      return sendJson(res, answer.status, answer.body)
    }
  }
  if (parts[0] === 'boot' && parts.length === 2 && isRead(method) && opts.boot !== undefined) {
    return serveBootFile(opts.boot, parts[1], baseUrl(opts, req), req, res)
  }
  if (parts[0] === 'images' && parts.length >= 2 && parts.length <= 4) {
    // /images/NAME[/VERSION]/image.torrent and /images/NAME/VERSION/image.tar[.gz|.zst]
    const file = parts[parts.length - 1]
    const ref = parts.length === 4 ? `${parts[1]}@${parts[2]}` : parts.length === 3 ? parts[1] : undefined
    if (ref !== undefined && file === 'image.torrent' && isRead(method)) return sendTorrent(opts, req, res, ref, url.searchParams.get('webseed') !== '0')
    if (parts.length === 4 && PAYLOAD_FILES.includes(file) && isRead(method)) return sendPayload(opts, req, res, ref as string, file)
  }
  if (parts.length === 0 && isRead(method)) {
    return sendJson(res, 200, { service: 'si-server', endpoints: ['/api/images', '/api/status', '/api/nodes', '/api/plan?node=NAME&mac=MAC', '/boot/NAME', '/images/NAME[/VERSION]/image.torrent', '/images/NAME/VERSION/image.tar[.gz|.zst]', '/announce', '/scrape'] })
  }
  sendJson(res, isKnownPath(parts) ? 405 : 404, { error: `no route for ${method} ${url.pathname}` })
}

function describeVersion (v: ImageVersion): Record<string, unknown> {
  return {
    name: v.name,
    version: v.version,
    size: v.size,
    infoHash: v.infoHashHex,
    pieceLength: v.pieceLength,
    createdAt: v.createdAt,
    entries: v.entries,
    compression: v.compression,
    torrent: `/images/${encodeURIComponent(v.name)}/${v.version}/image.torrent`,
    payload: payloadPath(v)
  }
}

function payloadPath (v: ImageVersion): string {
  return `/images/${encodeURIComponent(v.name)}/${v.version}/${v.payloadName}`
}

/** ?webseed=0 leaves the web seed out: a client then gets the payload over BitTorrent only. */
async function sendTorrent (opts: HttpApiOptions, req: http.IncomingMessage, res: http.ServerResponse, ref: string, webSeed: boolean): Promise<void> {
  parseImageRef(ref)
  const version = await opts.repo.resolve(ref)
  const base = baseUrl(opts, req)
  const raw = await opts.repo.readTorrent(version)
  const body = withTrackers(raw, {
    announce: [`${base}/announce`],
    urlList: webSeed ? [`${base}${payloadPath(version)}`] : []
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
async function sendPayload (opts: HttpApiOptions, req: http.IncomingMessage, res: http.ServerResponse, ref: string, file: string): Promise<void> {
  parseImageRef(ref)
  const version = await opts.repo.resolve(ref)
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

function receiveReport (fleet: Fleet, node: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  return new Promise(resolve => {
    if (!isNodeName(node)) { sendJson(res, 400, { error: `invalid node name ${JSON.stringify(node)}` }); resolve(); return }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_EVENT_BYTES) {
        sendJson(res, 413, { error: `event larger than ${MAX_EVENT_BYTES} bytes` })
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on('error', () => resolve())
    req.on('end', () => {
      if (size <= MAX_EVENT_BYTES) {
        let event: unknown
        try { event = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch { event = undefined }
        if (typeof event !== 'object' || event === null || Array.isArray(event)) sendJson(res, 400, { error: 'event must be a JSON object' })
        else if (fleet.record(node, event as Record<string, unknown>) === undefined) sendJson(res, 503, { error: 'too many nodes' })
        else sendJson(res, 204, undefined)
      }
      resolve()
    })
  })
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

function isKnownPath (parts: string[]): boolean { return parts[0] === 'api' || parts[0] === 'images' || parts[0] === 'boot' }

function safeDecode (part: string): string {
  try { return decodeURIComponent(part) } catch { return part }
}

function sendJson (res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) { res.end(); return }
  if (body === undefined) { res.writeHead(status); res.end(); return }
  const text = JSON.stringify(body, null, 2) + '\n'
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

function sendError (res: http.ServerResponse, err: unknown): void {
  const status = isSiError(err, 'ERR_IMAGE_NOT_FOUND') ? 404 : isSiError(err, 'ERR_INVALID_IMAGE_NAME') ? 400 : 500
  sendJson(res, status, { error: err instanceof SiError ? err.message : describeError(err), code: err instanceof SiError ? err.code : 'ERR_INTERNAL' })
}
