// Streaming transports (HTTP, multicast): the payload arrives in order from one source,
// goes through a verifier that passes on a piece only once its SHA-1 matched the torrent,
// and straight into extraction, so the target only ever receives verified data, exactly
// as with the swarm. Progress events and a stall watchdog are the runner's.
import { createHash } from 'node:crypto'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { SiError, isSiError, describeError } from '../errors.ts'
import { pieceSize, type Metainfo } from '../torrent/metainfo.ts'
import { RateMeter } from '../swarm/rate-meter.ts'
import { extractTar, type ExtractOptions } from './extract.ts'
import { checkSpace, targetNeed } from './space.ts'
import { ensureTargetDir } from './target-dir.ts'
import type { DeployEvent, DeployResult, EventSink, ProgressFigures } from './events.ts'
import { peakRssBytes } from './peak-rss.ts'

export const STREAM_PROGRESS_INTERVAL_MS = 500
/** After the stream fails, how long a helper process gets to exit and tell why. */
const HELPER_EXIT_GRACE_MS = 1_000

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
  /** no byte from the source for this long: the transfer has stalled */
  stallSeconds: number
  transport: 'http' | 'multicast'
  /** keepMarker when overrides follow; overlay when this payload is an override */
  extract?: Pick<ExtractOptions, 'keepMarker' | 'overlay'>
}

/** Source -> verifier -> extractor, with progress events and a stall watchdog. */
export async function deployFromStream (opts: StreamDeployOptions, open: (signal: AbortSignal) => Promise<StreamSource>): Promise<DeployResult> {
  const started = Date.now()
  const meta = opts.metainfo
  const abort = new AbortController()
  const signal = opts.signal === undefined ? abort.signal : AbortSignal.any([opts.signal, abort.signal])
  const verifier = new PieceVerifier(meta)
  const rate = new RateMeter()
  let entries = 0
  let lastByteAt = Date.now()
  verifier.onReceive = n => { rate.add(n); lastByteAt = Date.now() }

  const figures = (): ProgressFigures => {
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

  await ensureTargetDir(opts.target)
  const target = await targetNeed(meta, opts.target, opts.extract?.overlay === true)
  if (target !== undefined) await checkSpace([target])
  const source = await open(signal)
  opts.emit({ type: 'phase', phase: 'download', detail: `${meta.name}: ${meta.length} bytes over ${opts.transport} from ${source.label}` })
  const stallMs = opts.stallSeconds * 1000
  const ticker = setInterval(() => {
    if (Date.now() - lastByteAt > stallMs) abort.abort(new SiError('ERR_DOWNLOAD_STALLED', `no data from ${source.label} for ${Math.round(stallMs / 1000)} s`))
    opts.emit({ type: 'progress', phase: 'download', ...figures() })
  }, STREAM_PROGRESS_INTERVAL_MS)

  let rootTimes: DeployResult['rootTimes']
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
    const extracted = extractTar(verifier.iterator({ destroyOnReturn: false }), opts.target, { ...opts.extract, signal, onEntry: () => { entries++ } })
      .then(result => { verifier.resume(); return result })
    const steps = [transfer, extracted, source.finished ?? Promise.resolve()]
    const [, result] = await Promise.all(steps.map(p => p.catch(err => { abort.abort(err); throw err }))) as [void, Awaited<typeof extracted>, void]
    rootTimes = result.rootTimes
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
  const leaveReason = `nothing to seed over ${opts.transport}`
  const done: DeployEvent = { type: 'done', phase: 'done', seconds, downloadSeconds: seconds, peakRssBytes: peakRssBytes(), leaveReason, ...final }
  opts.emit(done)
  return { seconds, downloadSeconds: seconds, figures: final, leaveReason, ...(rootTimes !== undefined ? { rootTimes } : {}) }
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
