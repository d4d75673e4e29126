// Holds the payload's bytes: blocks are assembled in memory, and a piece reaches the file
// only after its SHA-1 matched, so nothing unverified is ever on disk, served to a peer or
// handed to extraction.
//
// A resumable staging file keeps its resume data next to it (as libtorrent does): the
// info hash, the layout and the bitfield of pieces written, saved a moment after each
// change and at close. A run killed halfway is followed by one that starts from those
// pieces. They are trusted within the same boot (the file's pages were written before
// the bitfield that names them, and a killed process loses neither); after a reboot, or
// when the data is in doubt, each one is hashed again.
import { EventEmitter } from 'node:events'
import { createHash } from 'node:crypto'
import { constants as fsc } from 'node:fs'
import { open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { swarmConfig, type PieceStoreConfig } from './config.ts'
import { BufferPool } from './buffer-pool.ts'

export interface PieceLayout {
  length: number
  pieceLength: number
  pieceCount: number
  pieceHashes: Buffer[]
}

/** The resume data's file: the staging file's name plus this. */
export const RESUME_SUFFIX = '.resume'
/** Resume data is saved this long after a piece is verified (and at close). */
const RESUME_SAVE_MS = 1000
const RESUME_FORMAT = 1
/** Changes at every boot: pieces written in another boot are hashed again. */
const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id'
/**
 * Free piece buffers kept for the next pieces (at least two): enough to cover the pieces
 * started between two evictions from the upload cache, which gives them back.
 */
const PIECE_POOL_FREE_BYTES = 8 * 1024 * 1024
const PIECE_POOL_MIN_FREE = 2
/** Free chunks of readInOrder kept beyond its read-ahead budget's (given back by its consumer). */
const CHUNK_POOL_SPARE = 2

interface ResumeData { format: number; infoHash: string; length: number; pieceLength: number; bootId: string; bitfield: string }

async function bootId (): Promise<string> {
  return await readFile(BOOT_ID_FILE, 'utf8').then(t => t.trim(), () => '')
}

export interface ResumeResult {
  /** Pieces taken over from an earlier run. */
  pieces: number
  /** Pieces the resume data named that were hashed again (0 when trusted). */
  rehashed: number
}

export interface PieceStoreEvents {
  verified: [index: number]
  closed: []
}

export class PieceStore extends EventEmitter<PieceStoreEvents> {
  readonly layout: PieceLayout
  readonly path: string
  private readonly file: FileHandle
  private readonly have: Uint8Array
  private readonly assembling = new Map<number, Buffer>()
  /** Verified pieces in memory for uploads, oldest first, and their bytes. */
  private readonly readCache = new Map<number, Promise<Buffer>>()
  private readCacheBytes = 0
  /**
   * Assembly buffers: a verified piece's buffer goes back to the pool when the upload cache
   * drops it, unless it was lent (readPiece, readBlock): a view of it may then sit in a
   * socket's write queue, and it is left to the collector.
   */
  private readonly piecePool: BufferPool
  /** Cached pieces whose buffer came from the pool and was never lent. */
  private readonly recyclable = new Map<number, Buffer>()
  /** readInOrder's chunks, given back by its consumer through releaseChunk. */
  private readonly chunkPool: BufferPool
  /** Bytes readInOrder has read (or is reading) ahead of its consumer. */
  private inOrderAhead = 0
  private closed = false
  private readonly config: Readonly<PieceStoreConfig>
  /** Where resume data goes, for a resumable staging file. */
  private resume: { path: string; infoHashHex: string; bootId: string } | undefined
  private resumeTimer: NodeJS.Timeout | undefined
  private resumeSaving: Promise<void> = Promise.resolve()

  private constructor (path: string, file: FileHandle, layout: PieceLayout, complete: boolean, config: Partial<PieceStoreConfig> | undefined) {
    super()
    this.path = path
    this.file = file
    this.layout = layout
    this.config = swarmConfig(config)
    this.have = new Uint8Array(layout.pieceCount).fill(complete ? 1 : 0)
    this.piecePool = new BufferPool(layout.pieceLength, Math.max(PIECE_POOL_MIN_FREE, Math.floor(PIECE_POOL_FREE_BYTES / layout.pieceLength)))
    const chunkBytes = this.inOrderChunkBytes()
    this.chunkPool = new BufferPool(chunkBytes, Math.ceil(this.inOrderAheadBytes(chunkBytes) / chunkBytes) + CHUNK_POOL_SPARE)
  }

  /** A complete payload already on disk (the server's image, or a seed's own copy). */
  static async openComplete (path: string, layout: PieceLayout, config?: Partial<PieceStoreConfig>): Promise<PieceStore> {
    const file = await openOrFail(path, 'r')
    const { size } = await file.stat()
    if (size !== layout.length) {
      await file.close()
      throw new SiError('ERR_STAGING', `${path} holds ${size} bytes, the torrent describes ${layout.length}`)
    }
    return new PieceStore(path, file, layout, true, config)
  }

  /** An empty staging file that downloaded pieces are written into. */
  static async createStaging (path: string, layout: PieceLayout, config?: Partial<PieceStoreConfig>): Promise<PieceStore> {
    // wx+: never take over a file someone else is staging into.
    const file = await openOrFail(path, 'wx+')
    try {
      await file.truncate(layout.length)
    } catch (err) {
      await file.close()
      throw new SiError('ERR_STAGING', `cannot size staging file ${path} to ${layout.length} bytes: ${(err as Error).message}`, { cause: err })
    }
    return new PieceStore(path, file, layout, false, config)
  }

  /**
   * A staging file that may hold pieces from an earlier run of the same torrent (found
   * through the resume data beside it); created when missing. The caller makes sure no
   * other live run uses the path.
   */
  static async openResumable (path: string, layout: PieceLayout, infoHashHex: string, config?: Partial<PieceStoreConfig>): Promise<{ store: PieceStore; resumed: ResumeResult }> {
    const file = await openOrFail(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW)
    let store
    try {
      const { size } = await file.stat()
      if (size !== layout.length) await file.truncate(layout.length)
      store = new PieceStore(path, file, layout, false, config)
    } catch (err) {
      await file.close()
      throw new SiError('ERR_STAGING', `cannot size staging file ${path} to ${layout.length} bytes: ${(err as Error).message}`, { cause: err })
    }
    const boot = await bootId()
    store.resume = { path: path + RESUME_SUFFIX, infoHashHex, bootId: boot }
    try {
      return { store, resumed: await store.loadResume(boot) }
    } catch (err) {
      await store.close()
      throw err
    }
  }

  /** Takes over the pieces the resume data names: trusted in the same boot, else hashed again. */
  private async loadResume (boot: string): Promise<ResumeResult> {
    const r = this.resume!
    let data: ResumeData
    try {
      data = JSON.parse(await readFile(r.path, 'utf8')) as ResumeData
    } catch { return { pieces: 0, rehashed: 0 } }
    const { pieceLength, pieceCount, length } = this.layout
    if (data.format !== RESUME_FORMAT || data.infoHash !== r.infoHashHex || data.length !== length || data.pieceLength !== pieceLength || typeof data.bitfield !== 'string') {
      return { pieces: 0, rehashed: 0 }
    }
    const bits = Buffer.from(data.bitfield, 'base64')
    if (bits.length !== Math.ceil(pieceCount / 8)) return { pieces: 0, rehashed: 0 }
    const trusted = boot !== '' && data.bootId === boot
    let pieces = 0
    let rehashed = 0
    for (let i = 0; i < pieceCount; i++) {
      if ((bits[i >> 3] & (0x80 >> (i & 7))) === 0) continue
      if (!trusted) {
        rehashed++
        const buf = Buffer.allocUnsafe(this.pieceSize(i))
        const { bytesRead } = await this.file.read(buf, 0, buf.length, i * pieceLength)
        if (bytesRead !== buf.length || !createHash('sha1').update(buf).digest().equals(this.layout.pieceHashes[i])) continue
      }
      this.have[i] = 1
      pieces++
    }
    return { pieces, rehashed }
  }

  /** Soon after a change: many pieces a second must not mean many writes. */
  private scheduleResumeSave (): void {
    if (this.resume === undefined || this.resumeTimer !== undefined) return
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = undefined
      void this.saveResume()
    }, RESUME_SAVE_MS)
  }

  /** Written aside and renamed: a kill mid-write leaves the previous resume data whole. */
  private saveResume (): Promise<void> {
    const r = this.resume
    if (r === undefined) return this.resumeSaving
    const data: ResumeData = {
      format: RESUME_FORMAT,
      infoHash: r.infoHashHex,
      length: this.layout.length,
      pieceLength: this.layout.pieceLength,
      bootId: r.bootId,
      bitfield: Buffer.from(this.bitfield()).toString('base64')
    }
    const tmp = `${r.path}.${process.pid}.tmp`
    // One save at a time, in order: the last one written is the newest.
    this.resumeSaving = this.resumeSaving.then(async () => {
      await writeFile(tmp, JSON.stringify(data))
      await rename(tmp, r.path)
    }).catch(() => { /* resume data is an optimisation: a failed save costs a re-download */ })
    return this.resumeSaving
  }

  has (index: number): boolean { return this.have[index] === 1 }

  pieceSize (index: number): number {
    const { pieceLength, pieceCount, length } = this.layout
    return index < pieceCount - 1 ? pieceLength : length - pieceLength * (pieceCount - 1)
  }

  /** The BitTorrent bitfield of verified pieces (high bit first). */
  bitfield (): Uint8Array {
    const out = new Uint8Array(Math.ceil(this.layout.pieceCount / 8))
    for (let i = 0; i < this.layout.pieceCount; i++) {
      if (this.have[i] === 1) out[i >> 3] |= 0x80 >> (i & 7)
    }
    return out
  }

  writeBlock (index: number, offset: number, data: Uint8Array): void {
    if (this.have[index] === 1) return
    const size = this.pieceSize(index)
    if (offset < 0 || offset + data.length > size) return
    let buf = this.assembling.get(index)
    if (buf === undefined) {
      // The last piece, shorter, is the only one not from the pool.
      buf = size === this.piecePool.size ? this.piecePool.take() : Buffer.allocUnsafe(size)
      this.assembling.set(index, buf)
    }
    buf.set(data, offset)
  }

  /**
   * Verifies an assembled piece; on success writes it and marks it held. The bytes come
   * back either way, for telling honest senders from liars.
   */
  async commit (index: number): Promise<{ verified: boolean; data: Buffer | undefined }> {
    const buf = this.assembling.get(index)
    this.assembling.delete(index)
    if (buf === undefined || this.have[index] === 1) return { verified: this.have[index] === 1, data: undefined }
    const digest = createHash('sha1').update(buf).digest()
    if (!digest.equals(this.layout.pieceHashes[index])) return { verified: false, data: buf }
    await this.file.write(buf, 0, buf.length, index * this.layout.pieceLength)
    if (this.closed || this.have[index] === 1) return { verified: true, data: buf }
    this.have[index] = 1
    this.cachePiece(index, Promise.resolve(buf))
    // Written, hashed, and only read (synchronously) by our caller after this: it is the
    // upload cache's until lent. A failed piece's buffer is not: the caller keeps it to
    // compare blocks (smart ban).
    this.recyclable.set(index, buf)
    this.scheduleResumeSave()
    this.emit('verified', index)
    return { verified: true, data: buf }
  }

  /** A block of a verified piece, for a peer's request. */
  async readBlock (index: number, offset: number, length: number): Promise<Buffer> {
    if (this.have[index] !== 1) throw new SiError('ERR_STAGING', `piece ${index} is not held`)
    const piece = await this.readPiece(index)
    return piece.subarray(offset, offset + length)
  }

  readPiece (index: number): Promise<Buffer> {
    this.recyclable.delete(index)
    let p = this.readCache.get(index)
    if (p === undefined) {
      p = this.readRange(index * this.layout.pieceLength, this.pieceSize(index), `piece ${index}`)
      p.catch(() => { if (this.readCache.get(index) === p) this.uncache(index) })
      this.cachePiece(index, p)
    } else {
      // Refresh its place in the LRU order.
      this.readCache.delete(index)
      this.readCache.set(index, p)
    }
    return p
  }

  /** Bytes of pieces the upload cache holds now. */
  get cachedBytes (): number { return this.readCacheBytes }

  /** Bytes readInOrder holds ahead of its consumer now (read, or being read, and not yet taken). */
  get readAheadBytes (): number { return this.inOrderAhead }

  /**
   * The payload from the first byte on, as soon as each piece is verified, in chunks of at
   * most `inOrderChunkBytes`, with at most `inOrderAheadBytes` read ahead of the consumer:
   * what it holds depends neither on the piece size nor on how far the download is ahead
   * of the consumer. A consumer that stops taking stops the reading. It reads from the
   * staging file, past the upload cache: a chunk taken by extraction is not wanted again.
   */
  async * readInOrder (signal?: AbortSignal): AsyncGenerator<Buffer> {
    const { length, pieceLength } = this.layout
    const chunkBytes = this.inOrderChunkBytes()
    const aheadBytes = this.inOrderAheadBytes(chunkBytes)
    const reads: Array<{ bytes: number; data: Promise<Buffer> }> = []
    let next = 0
    let ahead = 0
    const held = (bytes: number): void => { ahead += bytes; this.inOrderAhead += bytes }
    /** Starts reads of verified pieces while the budget allows; waits for a piece only when nothing is read. */
    const readAhead = async (): Promise<void> => {
      while (next < length && ahead + chunkBytes <= aheadBytes) {
        const index = Math.floor(next / pieceLength)
        if (this.have[index] !== 1) {
          if (reads.length > 0) return // hand over what is read while the piece comes
          await this.waitFor(index, signal)
        }
        const bytes = Math.min(chunkBytes, (index + 1) * pieceLength - next, length - next)
        const data = this.readRange(next, bytes, `byte ${next}`, this.chunkPool.take())
        data.catch(() => {}) // met when its turn comes
        reads.push({ bytes, data })
        held(bytes)
        next += bytes
      }
    }
    try {
      while (next < length || reads.length > 0) {
        await readAhead()
        const read = reads.shift()!
        let data: Buffer
        try {
          data = await read.data
        } finally {
          held(-read.bytes)
        }
        // The next reads run while the consumer works on this one.
        if (reads.length > 0 || next >= length || this.have[Math.floor(next / pieceLength)] === 1) await readAhead()
        yield data
      }
    } finally {
      // Reads still running finish on their own; what they read is dropped.
      for (const read of reads) held(-read.bytes)
    }
  }

  /**
   * A chunk readInOrder yielded, which its consumer no longer uses (nor any view of it):
   * it is read into again. Anything else is ignored.
   */
  releaseChunk (chunk: Uint8Array): void {
    this.chunkPool.give(chunk)
  }

  /** readInOrder's chunks made so far: bounded when its consumer gives them back, whatever the payload's size. */
  get chunksMade (): number { return this.chunkPool.made }

  private inOrderChunkBytes (): number { return Math.max(1, this.config.inOrderChunkBytes) }
  private inOrderAheadBytes (chunkBytes: number): number { return Math.max(chunkBytes, this.config.inOrderAheadBytes) }

  /** `bytes` of the staging file from `offset` (into `into`, when given); `what` names them if the file is short. */
  private async readRange (offset: number, bytes: number, what: string, into?: Buffer): Promise<Buffer> {
    const buf = into === undefined ? Buffer.allocUnsafe(bytes) : into.subarray(0, bytes)
    const { bytesRead } = await this.file.read(buf, 0, bytes, offset)
    if (bytesRead !== bytes) throw new SiError('ERR_STAGING', `short read of ${what} from ${this.path}`)
    return buf
  }

  /** Drops the pieces being assembled (after a failed hash check, for instance). */
  discard (index: number): void {
    this.assembling.delete(index)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.assembling.clear()
    this.readCache.clear()
    this.readCacheBytes = 0
    this.recyclable.clear()
    this.piecePool.clear()
    this.chunkPool.clear()
    this.emit('closed')
    clearTimeout(this.resumeTimer)
    this.resumeTimer = undefined
    await this.saveResume()
    await this.file.close()
  }

  /** Newest last; the oldest go while the cache holds more than its bytes (one piece stays). */
  private cachePiece (index: number, p: Promise<Buffer>): void {
    this.uncache(index)
    this.readCache.set(index, p)
    this.readCacheBytes += this.pieceSize(index)
    while (this.readCacheBytes > this.config.readCacheBytes && this.readCache.size > 1) {
      this.uncache(this.readCache.keys().next().value as number)
    }
  }

  private uncache (index: number): void {
    if (!this.readCache.delete(index)) return
    this.readCacheBytes -= this.pieceSize(index)
    const buf = this.recyclable.get(index)
    if (buf === undefined) return
    this.recyclable.delete(index)
    this.piecePool.give(buf)
  }

  /** Piece buffers made so far: with nothing lent, bounded by the cache and the pool, whatever the piece count. */
  get pieceBuffersMade (): number { return this.piecePool.made }

  private waitFor (index: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        this.off('verified', onVerified)
        this.off('closed', onClosed)
        signal?.removeEventListener('abort', onAbort)
      }
      const onVerified = (i: number): void => { if (i === index) { cleanup(); resolve() } }
      const onClosed = (): void => { cleanup(); reject(new SiError('ERR_ABORTED', 'piece store closed')) }
      const onAbort = (): void => { cleanup(); reject(new SiError('ERR_ABORTED', 'aborted')) }
      if (signal?.aborted === true) return onAbort()
      this.on('verified', onVerified)
      this.on('closed', onClosed)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}

async function openOrFail (path: string, flags: string | number): Promise<FileHandle> {
  try {
    return await open(path, flags)
  } catch (err) {
    throw new SiError('ERR_STAGING', `cannot open ${path}: ${(err as Error).message}`, { cause: err })
  }
}
