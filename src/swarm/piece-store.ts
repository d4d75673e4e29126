// Holds the payload's bytes: blocks are assembled in memory, and a piece reaches the file
// only after its SHA-1 matched, so nothing unverified is ever on disk, served to a peer or
// handed to extraction.
import { EventEmitter } from 'node:events'
import { createHash } from 'node:crypto'
import { open, type FileHandle } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { swarmConfig, type PieceStoreConfig } from './config.ts'

export interface PieceLayout {
  length: number
  pieceLength: number
  pieceCount: number
  pieceHashes: Buffer[]
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
  private readonly readCache = new Map<number, Promise<Buffer>>()
  private closed = false
  private readonly config: Readonly<PieceStoreConfig>

  private constructor (path: string, file: FileHandle, layout: PieceLayout, complete: boolean, config: Partial<PieceStoreConfig> | undefined) {
    super()
    this.path = path
    this.file = file
    this.layout = layout
    this.config = swarmConfig(config)
    this.have = new Uint8Array(layout.pieceCount).fill(complete ? 1 : 0)
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
      buf = Buffer.allocUnsafe(size)
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
    let p = this.readCache.get(index)
    if (p === undefined) {
      const size = this.pieceSize(index)
      const buf = Buffer.allocUnsafe(size)
      p = this.file.read(buf, 0, size, index * this.layout.pieceLength).then(({ bytesRead }) => {
        if (bytesRead !== size) throw new SiError('ERR_STAGING', `short read of piece ${index} from ${this.path}`)
        return buf
      })
      p.catch(() => this.readCache.delete(index))
      this.cachePiece(index, p)
    } else {
      // Refresh its place in the LRU order.
      this.readCache.delete(index)
      this.readCache.set(index, p)
    }
    return p
  }

  /** The payload from the first byte on, each piece as soon as it is verified. */
  async * readInOrder (signal?: AbortSignal): AsyncGenerator<Buffer> {
    for (let i = 0; i < this.layout.pieceCount; i++) {
      if (this.have[i] !== 1) await this.waitFor(i, signal)
      yield await this.readPiece(i)
    }
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
    this.emit('closed')
    await this.file.close()
  }

  private cachePiece (index: number, p: Promise<Buffer>): void {
    this.readCache.set(index, p)
    while (this.readCache.size > this.config.readCachePieces) {
      const oldest = this.readCache.keys().next().value as number
      this.readCache.delete(oldest)
    }
  }

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

async function openOrFail (path: string, flags: string): Promise<FileHandle> {
  try {
    return await open(path, flags)
  } catch (err) {
    throw new SiError('ERR_STAGING', `cannot open ${path}: ${(err as Error).message}`, { cause: err })
  }
}
