// SHA-1 of every piece of a byte stream (BEP 3's "pieces"), computed while the bytes go
// by, so a payload can be hashed as it is written instead of read back afterwards; and
// the same over a file's bytes, for what was not seen going by.
import { createHash, type Hash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { SiError } from '../errors.ts'

export const SHA1_LENGTH = 20
const READ_CHUNK_BYTES = 1024 * 1024

export class PieceHasher {
  /** Bytes hashed so far. */
  bytes = 0
  private hash: Hash = createHash('sha1')
  private filled = 0
  private readonly digests: Buffer[] = []
  private closed = false

  constructor (readonly pieceLength: number) {
    if (!Number.isSafeInteger(pieceLength) || pieceLength <= 0) throw new SiError('ERR_INVALID_ARGUMENT', `piece length ${pieceLength} is not a positive integer`)
  }

  update (data: Uint8Array): void {
    if (this.closed) throw new SiError('ERR_INVALID_ARGUMENT', 'piece hashes were already taken')
    for (let at = 0; at < data.length;) {
      const n = Math.min(this.pieceLength - this.filled, data.length - at)
      this.hash.update(data.subarray(at, at + n))
      this.filled += n
      at += n
      if (this.filled === this.pieceLength) {
        this.digests.push(this.hash.digest())
        this.hash = createHash('sha1')
        this.filled = 0
      }
    }
    this.bytes += data.length
  }

  /** The pieces' digests one after the other, the last piece as far as the stream went. Ends the hashing. */
  pieces (): Buffer {
    if (!this.closed && this.filled > 0) this.digests.push(this.hash.digest())
    this.closed = true
    return Buffer.concat(this.digests)
  }
}

export interface HashFileOptions {
  signal?: AbortSignal
  /** After each piece: bytes hashed so far. */
  onPiece?(bytes: number): void
}

/**
 * Hashes the first `end` bytes of an open file in pieces of `hasher.pieceLength`,
 * feeding `hasher` (which must be at the file's start).
 */
export async function hashFile (fh: FileHandle, end: number, hasher: PieceHasher, what: string, opts: HashFileOptions = {}): Promise<void> {
  const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, hasher.pieceLength))
  while (hasher.bytes < end) {
    if (opts.signal?.aborted === true) throw new SiError('ERR_ABORTED', 'hashing aborted')
    const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, end - hasher.bytes), hasher.bytes)
    if (bytesRead === 0) throw new SiError('ERR_SOURCE_CHANGED', `${what} shrank while being hashed`)
    hasher.update(chunk.subarray(0, bytesRead))
    if (hasher.bytes % hasher.pieceLength === 0 || hasher.bytes === end) opts.onPiece?.(hasher.bytes)
  }
}
