// Unicast transport: the agent streams the image tarball from the server's payload URL
// (the torrent's web seed) straight into extraction, resuming a connection that drops or
// starves with a range request. Each piece's SHA-1 from the torrent
// is checked before its bytes reach the extractor, so the target only ever receives
// verified data, exactly as with the swarm. Also home of the streaming runner that the
// multicast transport shares, and of `auto` (swarm first, unicast when the swarm stalls).
import { createHash } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { Readable, Transform, type TransformCallback } from 'node:stream'
import { SiError, isSiError, describeError } from '../errors.ts'
import { abortableSleep } from './abortable-sleep.ts'
import { pieceSize, type Metainfo } from '../torrent/metainfo.ts'
import { RateMeter } from '../swarm/rate-meter.ts'
import { extractTar } from './extract.ts'
import type { DeployEvent, EventSink, ProgressFigures } from './events.ts'

export const STREAM_PROGRESS_INTERVAL_MS = 500
/** No byte from the source for this long: the transfer is declared stalled. */
export const DEFAULT_STREAM_STALL_SECONDS = 60
/** After the stream fails, how long a helper process gets to exit and tell why. */
const HELPER_EXIT_GRACE_MS = 1_000
/** `auto` falls back to HTTP when the swarm verifies no piece for this long. */
export const AUTO_SWARM_STALL_SECONDS = 30
/** A dropped connection is picked up again this many times in a row without a byte in between. */
export const MAX_HTTP_RESUMES = 5
export const HTTP_RESUME_DELAY_MS = 1_000
/**
 * One connection that delivers nothing this long is dropped and the rest asked for anew:
 * of many TCP flows through one full queue, a few can be starved for a minute while a
 * new connection is served at once (measured with 32 nodes on one 10 Mbit/s server link).
 */
export const HTTP_CONNECTION_STALL_MS = 15_000

export type TransportName = 'bt' | 'http' | 'multicast' | 'auto'
export const TRANSPORTS: readonly TransportName[] = ['bt', 'http', 'multicast', 'auto']

export function parseTransport (value: string | undefined): TransportName {
  const v = value ?? 'bt'
  if ((TRANSPORTS as readonly string[]).includes(v)) return v as TransportName
  throw new SiError('ERR_INVALID_ARGUMENT', `--transport ${JSON.stringify(v)}: expected one of ${TRANSPORTS.join(', ')}`)
}

/**
 * Passes the payload on one piece at a time, and only once the piece's SHA-1 matched the
 * torrent: a piece is at most a few MiB, so holding one back costs little latency.
 */
export class PieceVerifier extends Transform {
  private readonly meta: Metainfo
  private index = 0
  private piece: Buffer
  private filled = 0
  /** bytes received from the source, verified or not */
  received = 0
  verifiedBytes = 0
  onReceive: ((bytes: number) => void) | undefined

  constructor (meta: Metainfo) {
    super()
    this.meta = meta
    this.piece = Buffer.allocUnsafe(pieceSize(meta, 0))
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.received += chunk.length
    this.onReceive?.(chunk.length)
    let off = 0
    while (off < chunk.length) {
      if (this.index >= this.meta.pieceCount) {
        done(new SiError('ERR_TRANSFER_INCOMPLETE', `the source sent more than the torrent's ${this.meta.length} bytes`))
        return
      }
      const n = Math.min(chunk.length - off, this.piece.length - this.filled)
      chunk.copy(this.piece, this.filled, off, off + n)
      this.filled += n
      off += n
      if (this.filled === this.piece.length) {
        const err = this.finishPiece()
        if (err !== undefined) { done(err); return }
      }
    }
    done()
  }

  override _flush (done: TransformCallback): void {
    if (this.verifiedBytes !== this.meta.length) {
      done(new SiError('ERR_TRANSFER_INCOMPLETE', `the source ended after ${this.received} of ${this.meta.length} bytes`))
      return
    }
    done()
  }

  private finishPiece (): SiError | undefined {
    const digest = createHash('sha1').update(this.piece).digest()
    if (!digest.equals(this.meta.pieceHashes[this.index])) {
      return new SiError('ERR_PIECE_HASH_MISMATCH', `piece ${this.index} from the source does not match the torrent's SHA-1`)
    }
    this.push(this.piece)
    this.verifiedBytes += this.piece.length
    this.index++
    this.filled = 0
    if (this.index === this.meta.pieceCount) this.emit('verified-all')
    // A fresh buffer per piece: the one just pushed now belongs to the extractor.
    if (this.index < this.meta.pieceCount) this.piece = Buffer.allocUnsafe(pieceSize(this.meta, this.index))
    return undefined
  }
}

export interface StreamSource {
  /** the payload, in order from byte 0 */
  stream: Readable
  /** what the progress line calls the source */
  label: string
  /** settles when the source is finished with (a helper process exited); rejects on its failure */
  finished?: Promise<void>
  /** stops the source early (on failure or abort) */
  close(): void
}

export interface StreamDeployOptions {
  metainfo: Metainfo
  target: string
  emit: EventSink
  signal?: AbortSignal
  stallSeconds?: number
  transport: 'http' | 'multicast'
}

export interface StreamDeployResult { seconds: number; figures: ProgressFigures }

/** Source -> verifier -> extractor, with progress events and a stall watchdog. */
export async function deployFromStream (opts: StreamDeployOptions, open: (signal: AbortSignal) => Promise<StreamSource>): Promise<StreamDeployResult> {
  const started = Date.now()
  const meta = opts.metainfo
  const abort = new AbortController()
  const signal = opts.signal === undefined ? abort.signal : AbortSignal.any([opts.signal, abort.signal])
  const verifier = new PieceVerifier(meta)
  const rate = new RateMeter()
  let entries = 0
  let peakRss = process.memoryUsage.rss()
  let lastByteAt = Date.now()
  verifier.onReceive = n => { rate.add(n); lastByteAt = Date.now() }

  const figures = (): ProgressFigures => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss())
    return {
      verifiedBytes: verifier.verifiedBytes,
      length: meta.length,
      progress: verifier.verifiedBytes / meta.length,
      downloadRate: rate.rate(),
      uploadRate: 0,
      peers: 1,
      seeds: 1,
      downloaded: verifier.received,
      downloadedFromServer: verifier.received,
      uploaded: 0,
      extractedEntries: entries,
      hashFailures: 0
    }
  }

  await ensureDir(opts.target)
  const source = await open(signal)
  opts.emit({ type: 'phase', phase: 'download', detail: `${meta.name}: ${meta.length} bytes over ${opts.transport} from ${source.label}` })
  const stallMs = (opts.stallSeconds ?? DEFAULT_STREAM_STALL_SECONDS) * 1000
  const ticker = setInterval(() => {
    if (Date.now() - lastByteAt > stallMs) abort.abort(new SiError('ERR_DOWNLOAD_STALLED', `no data from ${source.label} for ${Math.round(stallMs / 1000)} s`))
    opts.emit({ type: 'progress', phase: 'download', ...figures() })
  }, STREAM_PROGRESS_INTERVAL_MS)

  try {
    // Done when every piece is verified, not when the source closes: udp-receiver keeps its
    // output open until the sender says goodbye.
    const transfer = new Promise<void>((resolve, reject) => {
      verifier.once('verified-all', resolve)
      verifier.once('error', reject)
    })
    source.stream.once('error', err => verifier.destroy(err))
    source.stream.pipe(verifier)
    // After the end-of-archive marker the extractor lets go: the padding behind it is still
    // read (and verified), or the source would block on a full pipe and never finish. The
    // extractor stops at the marker's first zero block, so the last piece may still be on
    // its way: letting go must not destroy the verifier (an iterator's default on return).
    const extracted = extractTar(verifier.iterator({ destroyOnReturn: false }), opts.target, { signal, onEntry: () => { entries++ } })
      .then(result => { verifier.resume(); return result })
    const steps = [transfer, extracted, source.finished ?? Promise.resolve()]
    await Promise.all(steps.map(p => p.catch(err => { abort.abort(err); throw err })))
  } catch (err) {
    // A helper that failed (udp-receiver timing out) explains more than the stream it left short.
    const helperError = await failureWithin(source.finished, HELPER_EXIT_GRACE_MS)
    source.close()
    verifier.destroy()
    if (isSiError(helperError)) throw helperError
    const reason: unknown = signal.reason
    if (isSiError(reason)) throw reason
    if (isSiError(err)) throw err
    if (opts.signal?.aborted === true) throw new SiError('ERR_ABORTED', 'download aborted')
    throw new SiError('ERR_TRANSFER_INCOMPLETE', `${opts.transport} transfer from ${source.label} failed: ${describeError(err)}`, { cause: err })
  } finally {
    clearInterval(ticker)
  }
  const seconds = (Date.now() - started) / 1000
  const final = figures()
  const done: DeployEvent = { type: 'done', phase: 'done', seconds, downloadSeconds: seconds, peakRssBytes: peakRss, leaveReason: `nothing to seed over ${opts.transport}`, ...final }
  opts.emit(done)
  return { seconds, figures: final }
}

/** The payload URL: the torrent's web seed (si-server writes its own image.tar URL there). */
export function payloadUrl (meta: Metainfo): string {
  const url = meta.urlList.find(u => /^https?:\/\//.test(u))
  if (url === undefined) throw new SiError('ERR_INVALID_TORRENT', 'the torrent names no HTTP web seed (url-list), so --transport http has nowhere to fetch from')
  // BEP 19: a URL ending in / names a directory holding the torrent's file.
  return url.endsWith('/') ? `${url}${encodeURIComponent(meta.name)}` : url
}

export async function deployHttp (opts: Omit<StreamDeployOptions, 'transport'> & { connectionStallMs?: number; resumeDelayMs?: number }): Promise<StreamDeployResult> {
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
        // A server that cannot serve ranges will not learn to: that failure is final.
        if (isSiError(err, 'ERR_HTTP_STATUS')) throw err
        why = describeError(err)
        current = undefined
      }
    }
  } finally {
    current?.conn.close()
  }
}

/**
 * `auto`: the swarm first, since with the server seeding it is never slower than unicast
 * (see docs/BENCHMARKS.md); unicast only when the swarm delivers nothing, e.g. when peer
 * ports are filtered between the nodes and the server.
 */
export async function deployAuto (swarm: (stallSeconds: number) => Promise<unknown>, http: () => Promise<unknown>, emit: EventSink): Promise<void> {
  try {
    await swarm(AUTO_SWARM_STALL_SECONDS)
  } catch (err) {
    if (!isSiError(err, 'ERR_DOWNLOAD_STALLED')) throw err
    emit({ type: 'warning', message: `swarm delivered nothing (${err.message}); falling back to --transport http` })
    await http()
  }
}

/** The promise's rejection reason if it rejects within ms, else undefined. */
async function failureWithin (p: Promise<void> | undefined, ms: number): Promise<unknown> {
  if (p === undefined) return undefined
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<undefined>(resolve => { timer = setTimeout(() => resolve(undefined), ms) })
  try {
    return await Promise.race([p.then(() => undefined, (err: unknown) => err), timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function ensureDir (dir: string): Promise<void> {
  try { await mkdir(dir, { recursive: true }) } catch (err) {
    throw new SiError('ERR_INVALID_ARGUMENT', `target ${dir} is not a usable directory: ${describeError(err)}`, { cause: err })
  }
}
