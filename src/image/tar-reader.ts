// A streaming tar reader that keeps every byte: names and pax values stay Buffers, GNU
// sparse 1.0 members come out as data segments at their offsets. Each entry's body must
// be consumed (or abandoned) before the next entry is requested; what is left is skipped.
// An input whose chunks are reused (ReadTarOptions.release) gets each one back once the
// reader and its consumer are done with it.
import { SiError } from '../errors.ts'
import {
  BLOCK, decodeHeader, decodePax, entryFromHeader, padding, printableBytes, type PaxRecords, type TarEntry
} from './tar-format.ts'

/** pax headers and GNU long names hold metadata, not content: refuse absurd ones. */
const MAX_META_BYTES = 8 * 1024 * 1024
/** Segments of one sparse file; its map is read into memory. */
const MAX_SPARSE_SEGMENTS = 1_000_000
const MAX_SPARSE_MAP_LINE = 20

export interface ReadTarOptions {
  /**
   * Called with each input chunk the reader has consumed whole, once the consumer has
   * pulled again (the next segment or the next entry): the consumer is then done with
   * every segment and entry field that may be a view of it. With it, those views are
   * valid only until that pull.
   */
  release?(chunk: Buffer): void
}

export interface Segment {
  /** Logical offset of `data` in the file. */
  offset: number
  data: Buffer
}

export interface TarMember {
  entry: TarEntry
  /** Content of a regular file, in increasing offsets; gaps are holes. Empty for others. */
  body(): AsyncGenerator<Segment>
}

/** Buffers input chunks and hands out exact byte counts without copying when it can. */
class ByteQueue {
  private chunks: Buffer[] = []
  private head = 0
  buffered = 0
  /** Total bytes consumed so far, for error messages. */
  consumed = 0
  private ended = false
  /** Chunks consumed whole, to be released at the consumer's next pull. */
  private readonly spent: Buffer[] = []

  constructor (private readonly source: AsyncIterator<Buffer | Uint8Array | string>, private readonly release?: (chunk: Buffer) => void) {}

  /** The consumer pulled again: nothing it was handed before is used any more. */
  releaseSpent (): void {
    if (this.release === undefined) return
    for (const chunk of this.spent) this.release(chunk)
    this.spent.length = 0
  }

  private async fill (): Promise<boolean> {
    if (this.ended) return false
    const { value, done } = await this.source.next()
    if (done === true) { this.ended = true; return false }
    const buf = Buffer.isBuffer(value) ? value : typeof value === 'string' ? Buffer.from(value) : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    if (buf.length > 0) { this.chunks.push(buf); this.buffered += buf.length }
    return true
  }

  /** Up to `max` bytes (at least one), or undefined at end of input. */
  async some (max: number): Promise<Buffer | undefined> {
    while (this.buffered === 0) if (!await this.fill()) return undefined
    const first = this.chunks[0]
    const avail = first.length - this.head
    const n = Math.min(avail, max)
    const out = first.subarray(this.head, this.head + n)
    this.head += n
    if (this.head === first.length) {
      this.chunks.shift()
      this.head = 0
      if (this.release !== undefined) this.spent.push(first)
    }
    this.buffered -= n
    this.consumed += n
    return out
  }

  /** Exactly n bytes, or an error naming `what` if the input ends first. */
  async exact (n: number, what: string): Promise<Buffer> {
    while (this.buffered < n) {
      if (!await this.fill()) throw new SiError('ERR_ARCHIVE', `archive truncated in ${what} (at byte ${this.consumed + this.buffered})`)
    }
    const parts: Buffer[] = []
    let left = n
    while (left > 0) {
      const part = await this.some(left)
      parts.push(part!)
      left -= part!.length
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts)
  }

  async skip (n: number, what: string): Promise<void> {
    let left = n
    while (left > 0) {
      const part = await this.some(left)
      if (part === undefined) throw new SiError('ERR_ARCHIVE', `archive truncated in ${what}`)
      left -= part.length
    }
  }
}

async function readMeta (q: ByteQueue, size: number, what: string): Promise<Buffer> {
  if (size > MAX_META_BYTES) throw new SiError('ERR_ARCHIVE', `${what} of ${size} bytes is larger than ${MAX_META_BYTES}`)
  const data = await q.exact(size, what)
  await q.skip(padding(size), what)
  return Buffer.from(data)
}

function stripNul (b: Buffer): Buffer {
  const end = b.indexOf(0)
  return end < 0 ? b : b.subarray(0, end)
}

/** Reads the decimal lines of a sparse 1.0 map from the start of the member's data. */
class SparseMapReader {
  bytes = 0
  private pending = Buffer.alloc(0)
  constructor (private readonly q: ByteQueue, private readonly what: string, private readonly stored: number) {}

  async number (): Promise<number> {
    for (;;) {
      const nl = this.pending.indexOf(0x0a)
      if (nl >= 0) {
        const text = this.pending.subarray(0, nl).toString('latin1')
        this.pending = this.pending.subarray(nl + 1)
        if (!/^[0-9]{1,16}$/.test(text)) throw new SiError('ERR_ARCHIVE', `${this.what}: invalid sparse map line "${text}"`)
        return Number(text)
      }
      if (this.pending.length > MAX_SPARSE_MAP_LINE || this.bytes + BLOCK > this.stored) {
        throw new SiError('ERR_ARCHIVE', `${this.what}: malformed sparse map`)
      }
      const block = await this.q.exact(BLOCK, `${this.what} sparse map`)
      this.bytes += BLOCK
      this.pending = Buffer.concat([this.pending, block])
    }
  }
}

async function readSparseMap (q: ByteQueue, entry: TarEntry, stored: number, what: string): Promise<{ map: Array<[number, number]>; mapBytes: number }> {
  const r = new SparseMapReader(q, what, stored)
  const count = await r.number()
  if (count > MAX_SPARSE_SEGMENTS) throw new SiError('ERR_ARCHIVE', `${what}: ${count} sparse segments (limit ${MAX_SPARSE_SEGMENTS})`)
  const map: Array<[number, number]> = []
  let end = 0
  let data = 0
  for (let i = 0; i < count; i++) {
    const offset = await r.number()
    const length = await r.number()
    if (offset < end || offset + length > entry.size) throw new SiError('ERR_ARCHIVE', `${what}: sparse segment ${offset}+${length} overlaps or lies beyond size ${entry.size}`)
    end = offset + length
    data += length
    map.push([offset, length])
  }
  if (r.bytes + data > stored) throw new SiError('ERR_ARCHIVE', `${what}: sparse map describes more data than the member holds`)
  return { map, mapBytes: r.bytes }
}

/**
 * Reads a tar stream entry by entry. Metadata members (pax, GNU long names) are folded
 * into the entry they describe.
 */
export async function * readTar (input: AsyncIterable<Buffer | Uint8Array | string>, opts: ReadTarOptions = {}): AsyncGenerator<TarMember> {
  const source = input[Symbol.asyncIterator]()
  const q = new ByteQueue(source, opts.release)
  let global: PaxRecords = new Map()
  let local: PaxRecords | undefined
  let longName: Buffer | undefined
  let longLink: Buffer | undefined
  let last = '(start of archive)'
  try {
    for (;;) {
      const block = await q.some(BLOCK).then(async first => {
        if (first === undefined) return undefined
        return first.length === BLOCK ? first : Buffer.concat([first, await q.exact(BLOCK - first.length, `the header after "${last}"`)])
      })
      if (block === undefined) throw new SiError('ERR_ARCHIVE', `archive ends without its end-of-archive marker (after "${last}")`)
      let h
      try {
        h = decodeHeader(block)
      } catch (err) {
        throw new SiError('ERR_ARCHIVE', `header after "${last}": ${(err as Error).message}`, { cause: err })
      }
      if (h === undefined) return // end of archive: what follows is padding
      const flag = String.fromCharCode(h.typeflag)
      if (flag === 'x' || flag === 'g') {
        const records = decodePax(await readMeta(q, h.size, `pax header after "${last}"`), last)
        if (flag === 'g') global = new Map([...global, ...records])
        else local = new Map([...(local ?? []), ...records])
        continue
      }
      if (flag === 'L' || flag === 'K') {
        const value = stripNul(await readMeta(q, h.size, `GNU long name after "${last}"`))
        if (flag === 'L') longName = value; else longLink = value
        continue
      }
      const pax = local === undefined ? global : new Map([...global, ...local])
      const { entry, stored, sparseMajor } = entryFromHeader(h, pax, longName, longLink)
      local = longName = longLink = undefined
      const what = `entry "${printableBytes(entry.path) || '.'}"`
      last = printableBytes(entry.path) || '.'
      // Only regular files have content; a size on anything else is skipped, as GNU tar does.
      let left = stored
      let map: Array<[number, number]> | undefined
      if (sparseMajor !== undefined && entry.type === 'file') {
        const m = await readSparseMap(q, entry, stored, what)
        map = m.map
        entry.sparse = map
        left -= m.mapBytes
      }
      let active = true
      const body = async function * (): AsyncGenerator<Segment> {
        if (entry.type !== 'file' || !active) return
        const segments: Array<[number, number]> = map ?? [[0, left]]
        for (const [offset, length] of segments) {
          let done = 0
          while (done < length) {
            const data = await q.some(length - done)
            if (data === undefined) throw new SiError('ERR_ARCHIVE', `archive truncated in the data of ${what}`)
            left -= data.length
            yield { offset: offset + done, data }
            q.releaseSpent()
            done += data.length
          }
        }
      }
      yield { entry, body }
      q.releaseSpent()
      active = false
      await q.skip(left + padding(stored), `the data of ${what}`)
    }
  } finally {
    await source.return?.()
  }
}
