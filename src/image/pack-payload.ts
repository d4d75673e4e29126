// The payload file of an image version, written as the packer produces the tar:
// compressed as asked, every piece hashed as its bytes go by (so making the torrent needs
// no second read of the file), and handed to the disk as it grows (a background
// fdatasync every so often), so the final fsync that makes the version durable has
// little left to write.
import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import { Writable } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import { pieceLengthFor } from '../torrent/metainfo.ts'
import { PieceHasher, hashFile } from '../torrent/piece-hasher.ts'
import { compressor, type Compression } from './compression.ts'
import { SiError } from '../errors.ts'

/** Bytes written between background fdatasyncs. */
const SYNC_EVERY_BYTES = 64 * 1024 * 1024

export interface PayloadOutput {
  /** Write the tar here and end it. */
  input: Writable
  /** Settles once the file is complete and on disk: its size in bytes. */
  done: Promise<number>
}

/**
 * The piece hashes of a payload whose piece length, unless chosen, depends on its final
 * size (pieceLengthFor). They are taken at the length the size so far calls for; when
 * the size outgrows it, hashing starts again at the next piece boundary of the new
 * length, and what came before that boundary is hashed from the file once it is
 * written. So every byte is hashed once, and those of the first GiB (pieceLengthFor's
 * first step) at most twice, where hashing at every candidate length at once cost three
 * times the hashing.
 */
export class PayloadHashes {
  private bytes = 0
  /** Offset at which `hasher` started: what lies before it is hashed from the file. */
  private from = 0
  private hasher: PieceHasher

  /** `lengthFor`: the rule that picks the piece length from the size (tests give their own). */
  constructor (private readonly chosenLength?: number, private readonly lengthFor: (size: number) => number = pieceLengthFor) {
    this.hasher = new PieceHasher(chosenLength ?? lengthFor(0))
  }

  update (chunk: Uint8Array): void {
    const start = this.bytes
    this.bytes += chunk.length
    if (this.chosenLength === undefined) {
      const wanted = this.lengthFor(this.bytes)
      if (wanted !== this.hasher.pieceLength) {
        this.from = Math.ceil(start / wanted) * wanted
        this.hasher = new PieceHasher(wanted)
      }
    }
    if (this.bytes > this.from) this.hasher.update(chunk.subarray(Math.max(0, this.from - start)))
  }

  /** The piece length and the pieces' digests of the payload now complete at `path`. */
  async finish (path: string, signal?: AbortSignal): Promise<{ pieceLength: number; pieces: Buffer }> {
    const pieceLength = this.hasher.pieceLength
    if (this.from === 0) return { pieceLength, pieces: this.hasher.pieces() }
    const head = new PieceHasher(pieceLength)
    const fh = await open(path, 'r')
    try {
      await hashFile(fh, this.from, head, path, { signal })
    } finally {
      await fh.close()
    }
    return { pieceLength, pieces: Buffer.concat([head.pieces(), this.hasher.pieces()]) }
  }
}

/** A file that hashes what is written to it and syncs it as it goes; durable once finished. */
class HashedFile extends Writable {
  bytes = 0
  private fh: FileHandle | undefined
  private unsynced = 0
  private syncing: Promise<void> | undefined
  private syncFailure: unknown

  constructor (private readonly path: string, private readonly hashes: PayloadHashes) {
    super()
  }

  override _construct (callback: (err?: Error | null) => void): void {
    open(this.path, 'w').then(fh => { this.fh = fh; callback() }, callback)
  }

  /**
   * Hashes a chunk as it is handed over, not when its turn to be written comes: so the
   * hashing (this thread) runs while the chunk before it is being written (the thread
   * pool), instead of after it. Chunks are handed over in order, so hashed in order.
   */
  override write (chunk: string | Uint8Array, ...rest: unknown[]): boolean {
    if (typeof chunk === 'string') throw new SiError('ERR_INVALID_ARGUMENT', 'a payload is written as bytes, not text')
    this.hashes.update(chunk)
    return (super.write as (chunk: Uint8Array, ...rest: unknown[]) => boolean)(chunk, ...rest)
  }

  /** end(chunk) writes its chunk through write() (Writable's own end would not), so it is hashed. */
  override end (...args: unknown[]): this {
    if (typeof args[0] === 'string' || args[0] instanceof Uint8Array) {
      this.write(args[0])
      args = args.slice(typeof args[1] === 'string' ? 2 : 1)
    }
    return (super.end as (...args: unknown[]) => this)(...args)
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.writeAll(chunk).then(() => callback(), callback)
  }

  private async writeAll (chunk: Buffer): Promise<void> {
    for (let done = 0; done < chunk.length;) {
      const { bytesWritten } = await this.fh!.write(chunk, done, chunk.length - done, this.bytes + done)
      done += bytesWritten
    }
    this.bytes += chunk.length
    this.unsynced += chunk.length
    if (this.unsynced >= SYNC_EVERY_BYTES && this.syncing === undefined) {
      this.unsynced = 0
      this.syncing = this.fh!.datasync().catch(err => { this.syncFailure ??= err }).finally(() => { this.syncing = undefined })
    }
  }

  override _final (callback: (err?: Error | null) => void): void {
    const finish = async (): Promise<void> => {
      await this.syncing
      if (this.syncFailure !== undefined) throw this.syncFailure
      await this.fh!.sync()
    }
    finish().then(() => callback(), callback)
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    const close = async (): Promise<void> => {
      await this.syncing
      await this.fh?.close()
    }
    close().then(() => callback(err), e => callback(err ?? e))
  }
}

/** Writes the tar written to `input` to `path`, compressed as `c`, hashing it into `hashes`. */
export function writePayload (path: string, c: Compression, hashes: PayloadHashes): PayloadOutput {
  const file = new HashedFile(path, hashes)
  if (c === 'none') return { input: file, done: finished(file).then(() => file.bytes) }
  const input = compressor(c)
  return { input, done: pipeline(input, file).then(() => file.bytes) }
}

