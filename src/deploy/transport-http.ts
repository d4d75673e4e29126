// Unicast transport: the agent streams the image tarball from the server's payload URL
// (the torrent's web seed) through the piece verifier into extraction, resuming a
// connection that drops or starves with a range request.
import { Readable } from 'node:stream'
import { SiError, isSiError, describeError } from '../errors.ts'
import { abortableSleep } from './abortable-sleep.ts'
import type { Metainfo } from '../torrent/metainfo.ts'
import { deployFromStream, type StreamDeployOptions } from './stream-transport.ts'
import type { DeployResult } from './events.ts'

/** A dropped connection is picked up again this many times in a row without a byte in between. */
export const MAX_HTTP_RESUMES = 5
export const HTTP_RESUME_DELAY_MS = 1_000
/**
 * One connection that delivers nothing this long is dropped and the rest asked for anew:
 * of many TCP flows through one full queue, a few can be starved for a minute while a
 * new connection is served at once (measured with 32 nodes on one 10 Mbit/s server link).
 */
export const HTTP_CONNECTION_STALL_MS = 15_000

/** The payload URL: the torrent's web seed (si-server writes its own payload URL there: image.tar, .tar.gz or .tar.zst). */
export function payloadUrl (meta: Metainfo): string {
  const url = meta.urlList.find(u => /^https?:\/\//.test(u))
  if (url === undefined) throw new SiError('ERR_INVALID_TORRENT', 'the torrent names no HTTP web seed (url-list), so --transport http has nowhere to fetch from')
  // BEP 19: a URL ending in / names a directory holding the torrent's file.
  return url.endsWith('/') ? `${url}${encodeURIComponent(meta.name)}` : url
}

export async function deployHttp (opts: Omit<StreamDeployOptions, 'transport'> & { connectionStallMs?: number; resumeDelayMs?: number }): Promise<DeployResult> {
  const url = payloadUrl(opts.metainfo)
  const length = opts.metainfo.length
  return await deployFromStream({ ...opts, transport: 'http' }, async signal => {
    const stallMs = opts.connectionStallMs ?? HTTP_CONNECTION_STALL_MS
    const delayMs = opts.resumeDelayMs ?? HTTP_RESUME_DELAY_MS
    // A connection closed before the answer (a kept-alive one the server just timed out,
    // or a SYN lost in a full queue) is tried again; a server that stays unreachable or
    // answers with an error fails the transfer.
    let first: OpenConnection | undefined
    for (let attempt = 0; first === undefined; attempt++) {
      try {
        first = await openConnection(url, 0, length, signal, stallMs)
      } catch (err) {
        if (signal.aborted || !isSiError(err, 'ERR_SERVER_UNREACHABLE') || attempt >= MAX_HTTP_RESUMES) throw err
        opts.emit({ type: 'warning', message: `${err.message}; trying again (attempt ${attempt + 1} of ${MAX_HTTP_RESUMES})` })
        await abortableSleep(delayMs, signal, 'download')
      }
    }
    const onResume = (offset: number, why: string, attempt: number): void => {
      opts.emit({ type: 'warning', message: `${url}: connection lost after ${offset} of ${length} bytes (${why}); resuming from there (attempt ${attempt} of ${MAX_HTTP_RESUMES})` })
    }
    const stream = Readable.from(resumingBody(url, length, first, signal, { stallMs, delayMs }, onResume), { objectMode: false })
    return { stream, label: url, close: () => { stream.destroy() } }
  })
}

/** GET of the payload from `offset` on: the whole body (200) at 0, else the rest as one range (206). */
async function fetchPayload (url: string, offset: number, length: number, signal: AbortSignal): Promise<Response> {
  let res: Response
  try {
    res = await fetch(url, { signal, headers: offset > 0 ? { range: `bytes=${offset}-` } : {} })
  } catch (err) {
    throw new SiError('ERR_SERVER_UNREACHABLE', `cannot reach ${url}: ${describeError((err as { cause?: unknown }).cause ?? err)}`, { cause: err })
  }
  const expected = offset > 0 ? 206 : 200
  if (res.status === 410) {
    await res.body?.cancel().catch(() => undefined)
    throw new SiError('ERR_IMAGE_REMOVED', `${url} answered 410: the image was removed from the server`)
  }
  if (res.status !== expected || res.body === null) {
    await res.body?.cancel().catch(() => undefined)
    throw new SiError('ERR_HTTP_STATUS', `${url} answered ${res.status}${offset > 0 ? ` to a request for bytes ${offset}- (a resume needs 206)` : ''}`)
  }
  const declared = Number(res.headers.get('content-length') ?? length - offset)
  if (declared !== length - offset) {
    await res.body.cancel().catch(() => undefined)
    throw new SiError('ERR_HTTP_STATUS', `${url} ${offset > 0 ? `sent ${declared} bytes for the range from ${offset}` : `is ${declared} bytes`}, the torrent describes ${length}`)
  }
  return res
}

/** One connection: its own abort, fired by the caller's or by HTTP_CONNECTION_STALL_MS without data. */
class Connection {
  private readonly controller = new AbortController()
  readonly signal: AbortSignal
  private timer: NodeJS.Timeout | undefined

  constructor (outer: AbortSignal, private readonly stallMs: number) {
    this.signal = AbortSignal.any([outer, this.controller.signal])
  }

  /** (Re)starts the inactivity clock: call on open and on every chunk. */
  alive (): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.controller.abort(new SiError('ERR_DOWNLOAD_STALLED', `no data for ${this.stallMs / 1000} s on this connection`)), this.stallMs)
  }

  close (): void { clearTimeout(this.timer); this.controller.abort() }
}

interface OpenConnection { res: Response; conn: Connection }

/** A connection answering for the payload from `offset` on; nothing is left open if it fails. */
async function openConnection (url: string, offset: number, length: number, signal: AbortSignal, stallMs: number): Promise<OpenConnection> {
  const conn = new Connection(signal, stallMs)
  try {
    return { res: await fetchPayload(url, offset, length, conn.signal), conn }
  } catch (err) {
    conn.close()
    throw err
  }
}

/**
 * The payload's bytes in order, across dropped and starved connections: when a body ends
 * short, fails or goes quiet, the rest is asked for with a range request, so one bad
 * connection out of many does not cost a node its install. Bytes already passed on are
 * never asked again.
 */
async function * resumingBody (url: string, length: number, first: OpenConnection, signal: AbortSignal, timing: { stallMs: number; delayMs: number }, onResume: (offset: number, why: string, attempt: number) => void): AsyncGenerator<Buffer> {
  let offset = 0
  let current: OpenConnection | undefined = first
  let attempts = 0
  let why = ''
  try {
    for (;;) {
      if (current !== undefined) {
        const { res, conn } = current
        why = 'the body ended early'
        try {
          conn.alive()
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            conn.alive()
            offset += chunk.length
            attempts = 0
            yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
          }
        } catch (err) {
          if (signal.aborted) throw err
          const reason: unknown = conn.signal.reason
          why = isSiError(reason) ? reason.message : describeError((err as { cause?: unknown }).cause ?? err)
        } finally {
          conn.close()
        }
      }
      if (offset >= length) return
      attempts++
      if (attempts > MAX_HTTP_RESUMES) throw new SiError('ERR_TRANSFER_INCOMPLETE', `${url}: ${MAX_HTTP_RESUMES} resumes in a row delivered nothing, stopped at ${offset} of ${length} bytes (${why})`)
      onResume(offset, why, attempts)
      await abortableSleep(timing.delayMs, signal, 'download')
      try {
        current = await openConnection(url, offset, length, signal, timing.stallMs)
      } catch (err) {
        if (signal.aborted) throw err
        // A server that cannot serve ranges will not learn to, nor bring back a removed image: final.
        if (isSiError(err, 'ERR_HTTP_STATUS') || isSiError(err, 'ERR_IMAGE_REMOVED')) throw err
        why = describeError(err)
        current = undefined
      }
    }
  } finally {
    current?.conn.close()
  }
}

