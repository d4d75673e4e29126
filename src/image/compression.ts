// Compression of image payloads: none, gzip or zstd, both from Node's zlib (Node 24 has
// zstd), so neither the server nor the initramfs needs a compressor binary. zlib works
// on the thread pool, off the event loop that extraction needs; figures and the choice
// of level and default are in docs/FIDELITY.md.
// The agent recognises the format by its magic bytes, so a plan or torrent needs no
// field for it and an uncompressed tar still extracts as before.
import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { Readable, type Transform, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { constants, createGunzip, createGzip, createZstdCompress, createZstdDecompress } from 'node:zlib'
import { SiError } from '../errors.ts'

export const COMPRESSIONS = ['none', 'gzip', 'zstd'] as const
export type Compression = typeof COMPRESSIONS[number]
/**
 * zstd: 40% of the tar on a root file system, decoded faster than a gigabit link
 * delivers it and far faster than the extractor writes it, and built into Node, so
 * every agent has it (docs/FIDELITY.md).
 */
export const DEFAULT_COMPRESSION: Compression = 'zstd'
export const GZIP_LEVEL = 6
/** Chosen by scripts/bench-compression.ts on the debootstrap minbase (docs/FIDELITY.md). */
export const ZSTD_LEVEL = 3
/**
 * Output buffer of the zlib streams. zlib's 16 KiB default costs a thread-pool round
 * trip per 16 KiB: zstd decoded at 78-153 MB/s with it, 480-535 MB/s with 1 MiB.
 */
const ZLIB_CHUNK_BYTES = 1024 * 1024
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b, 0x08])
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])
const MAGIC_BYTES = 4
/** zlib's code when the input ends inside a frame or member. */
const TRUNCATED_CODE = 'Z_BUF_ERROR'

export function parseCompression (text: string): Compression {
  if ((COMPRESSIONS as readonly string[]).includes(text)) return text as Compression
  throw new SiError('ERR_INVALID_ARGUMENT', `compression "${text}": expected one of ${COMPRESSIONS.join(', ')}`)
}

/** Suffix for file names standard clients save under. */
export function compressionSuffix (c: Compression): string {
  return c === 'gzip' ? '.gz' : c === 'zstd' ? '.zst' : ''
}

export function sniffCompression (head: Buffer): Compression {
  if (head.length >= GZIP_MAGIC.length && head.subarray(0, GZIP_MAGIC.length).equals(GZIP_MAGIC)) return 'gzip'
  if (head.length >= ZSTD_MAGIC.length && head.subarray(0, ZSTD_MAGIC.length).equals(ZSTD_MAGIC)) return 'zstd'
  return 'none'
}

export interface CompressOptions {
  /** Overrides GZIP_LEVEL or ZSTD_LEVEL (scripts/bench-compression.ts compares levels). */
  level?: number
}

/** A stream that compresses what is written to it as `c`. */
export function compressor (c: 'gzip' | 'zstd', opts: CompressOptions = {}): Transform {
  if (c === 'gzip') return createGzip({ level: opts.level ?? GZIP_LEVEL, chunkSize: ZLIB_CHUNK_BYTES })
  return createZstdCompress({
    chunkSize: ZLIB_CHUNK_BYTES,
    params: {
      [constants.ZSTD_c_compressionLevel]: opts.level ?? ZSTD_LEVEL,
      // Like the zstd command: `zstd -t` or any decoder then checks the stored file.
      // No ZSTD_c_nbWorkers: Node's zstd stream breaks with worker threads
      // ("stream.push() after EOF", nodejs/node#59899, still so in 24.22.3).
      [constants.ZSTD_c_checksumFlag]: 1
    }
  })
}

export interface CompressedOutput {
  /** Write the tar here and end it. */
  input: Writable
  /** Settles once the file is complete (or failed). */
  done: Promise<void>
}

/** A writable that stores what is written to it in `path`, compressed as `c`. */
export function compressToFile (c: Compression, path: string, opts: CompressOptions = {}): CompressedOutput {
  if (c === 'none') {
    const input = createWriteStream(path)
    return { input, done: once(input, 'close').then(() => {}) }
  }
  const input = compressor(c, opts)
  return { input, done: pipeline(input, createWriteStream(path)) }
}

function toBuffer (c: Buffer | Uint8Array | string): Buffer {
  return Buffer.isBuffer(c) ? c : typeof c === 'string' ? Buffer.from(c) : Buffer.from(c.buffer, c.byteOffset, c.byteLength)
}

/** `first`, then the rest of `source`, counting the bytes into `counted.bytes`. */
async function * prependCounting (first: Buffer, source: AsyncIterator<Buffer | Uint8Array | string>, counted: { bytes: number }): AsyncGenerator<Buffer> {
  counted.bytes += first.length
  if (first.length > 0) yield first
  for (;;) {
    const { value, done } = await source.next()
    if (done === true) return
    const chunk = toBuffer(value)
    counted.bytes += chunk.length
    yield chunk
  }
}

function decompressionError (kind: Compression, err: unknown, consumed: number): SiError {
  const e = err as NodeJS.ErrnoException
  const what = e.code === TRUNCATED_CODE
    ? `ends inside a ${kind === 'zstd' ? 'frame' : 'member'} (truncated after ${consumed} compressed bytes)`
    : `is corrupt after ${consumed} compressed bytes: ${e.message}${e.code !== undefined ? ` (${e.code})` : ''}`
  return new SiError('ERR_ARCHIVE', `${kind} payload ${what}`, { cause: err })
}

/**
 * The uncompressed bytes of `input`, whichever of none/gzip/zstd it holds (told by its
 * magic bytes). Abandoning the iteration stops the decompressor and the input.
 */
export async function * decompressed (input: AsyncIterable<Buffer | Uint8Array | string>): AsyncGenerator<Buffer> {
  const source = input[Symbol.asyncIterator]()
  let head = Buffer.alloc(0)
  try {
    while (head.length < MAGIC_BYTES) {
      const { value, done } = await source.next()
      if (done === true) break
      head = Buffer.concat([head, toBuffer(value)])
    }
    const kind = sniffCompression(head)
    const fed = { bytes: 0 }
    const compressed = prependCounting(head, source, fed)
    if (kind === 'none') {
      yield * compressed
      return
    }
    const stream = Readable.from(compressed, { objectMode: false })
    const decoder = kind === 'gzip' ? createGunzip({ chunkSize: ZLIB_CHUNK_BYTES }) : createZstdDecompress({ chunkSize: ZLIB_CHUNK_BYTES })
    const piped = pipeline(stream, decoder)
    piped.catch(() => {}) // the iteration below sees the same error
    try {
      for await (const chunk of decoder) yield chunk as Buffer
      await piped
    } catch (err) {
      throw decompressionError(kind, err, decoder.bytesWritten)
    } finally {
      decoder.destroy()
      stream.destroy()
    }
    // zstd stops silently at the end of its last frame; bytes after it mean damage.
    if (decoder.bytesWritten !== fed.bytes) {
      throw new SiError('ERR_ARCHIVE', `${kind} payload has ${fed.bytes - decoder.bytesWritten} bytes after its last ${kind === 'zstd' ? 'frame' : 'member'} (${decoder.bytesWritten} compressed bytes decoded)`)
    }
  } finally {
    await source.return?.()
  }
}
