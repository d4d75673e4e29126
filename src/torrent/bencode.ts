// A strict front door to the `bencode` package. The library decodes whatever it can
// (trailing bytes, truncated strings, floats, arbitrarily deep nesting that blows the
// stack) and throws plain Errors; everything here is validated first by a small
// iterative scanner so callers only ever see well-formed values or an SiError.
import bencode from 'bencode'
import { SiError } from '../errors.ts'

/** Larger than any torrent or tracker reply we produce; bounds memory per decode. */
export const MAX_BENCODE_BYTES = 16 * 1024 * 1024
/** Torrents nest four levels deep at most; anything far deeper is hostile. */
export const MAX_BENCODE_DEPTH = 64
/** Long enough for any 64-bit integer with sign; longer ones cannot be exact. */
const MAX_INTEGER_DIGITS = 20

const CH_INT = 0x69 // i
const CH_LIST = 0x6c // l
const CH_DICT = 0x64 // d
const CH_END = 0x65 // e
const CH_COLON = 0x3a // :
const CH_MINUS = 0x2d // -
const CH_0 = 0x30
const CH_9 = 0x39

export type BencodeValue = number | Uint8Array | BencodeValue[] | BencodeDict
export interface BencodeDict { [key: string]: BencodeValue }

/** One key of a dictionary with the byte span of its value in the original input. */
export interface RawDictEntry { key: Buffer; valueStart: number; valueEnd: number }

function fail (message: string): never {
  throw new SiError('ERR_INVALID_BENCODE', message)
}

function isDigit (c: number | undefined): boolean {
  return c !== undefined && c >= CH_0 && c <= CH_9
}

/** Parses the unsigned decimal at pos up to terminator; returns [value, index of terminator]. */
function readDecimal (buf: Uint8Array, pos: number, terminator: number, what: string): [number, number] {
  const start = pos
  while (pos < buf.length && buf[pos] !== terminator) {
    if (!isDigit(buf[pos])) fail(`${what} at byte ${start}: unexpected byte 0x${buf[pos].toString(16)} at ${pos}`)
    pos++
  }
  if (pos >= buf.length) fail(`${what} at byte ${start}: truncated`)
  const digits = pos - start
  if (digits === 0) fail(`${what} at byte ${start}: no digits`)
  if (digits > MAX_INTEGER_DIGITS) fail(`${what} at byte ${start}: too many digits`)
  if (digits > 1 && buf[start] === CH_0) fail(`${what} at byte ${start}: leading zero`)
  return [Number(Buffer.from(buf.buffer, buf.byteOffset + start, digits).toString('latin1')), pos]
}

/** Returns the offset just past a string value at pos, and where its bytes start. */
function scanString (buf: Uint8Array, pos: number): { dataStart: number; end: number } {
  const [length, colon] = readDecimal(buf, pos, CH_COLON, 'string length')
  const dataStart = colon + 1
  if (length > buf.length - dataStart) fail(`string at byte ${pos}: truncated (needs ${length} bytes)`)
  return { dataStart, end: dataStart + length }
}

function scanInteger (buf: Uint8Array, pos: number): number {
  let p = pos + 1
  const negative = buf[p] === CH_MINUS
  if (negative) p++
  const [value, end] = readDecimal(buf, p, CH_END, 'integer')
  if (negative && value === 0) fail(`integer at byte ${pos}: negative zero`)
  return end + 1
}

interface Frame { dict: boolean; keys: Set<string>; expectKey: boolean; start: number }

/**
 * Returns the offset just past the single bencoded value starting at `start`, checking
 * its syntax all the way down. Dictionary keys must be strings and unique (duplicate
 * keys would let two clients read two different torrents out of the same bytes).
 */
export function bencodeValueEnd (buf: Uint8Array, start = 0): number {
  const stack: Frame[] = []
  let pos = start
  for (;;) {
    if (pos >= buf.length) fail(stack.length > 0 ? `truncated: container at byte ${stack[stack.length - 1].start} not closed` : `truncated at byte ${pos}`)
    const top = stack[stack.length - 1]
    const c = buf[pos]
    if (top !== undefined && c === CH_END) {
      if (top.dict && !top.expectKey) fail(`dictionary at byte ${top.start}: key without value`)
      stack.pop()
      pos++
    } else if (top?.dict === true && top.expectKey) {
      if (!isDigit(c)) fail(`dictionary at byte ${top.start}: key at byte ${pos} is not a string`)
      const { dataStart, end } = scanString(buf, pos)
      const key = Buffer.from(buf.buffer, buf.byteOffset + dataStart, end - dataStart).toString('latin1')
      if (top.keys.has(key)) fail(`dictionary at byte ${top.start}: duplicate key "${key}"`)
      top.keys.add(key)
      top.expectKey = false
      pos = end
      continue
    } else if (c === CH_INT) {
      pos = scanInteger(buf, pos)
    } else if (isDigit(c)) {
      pos = scanString(buf, pos).end
    } else if (c === CH_LIST || c === CH_DICT) {
      if (stack.length >= MAX_BENCODE_DEPTH) fail(`nested deeper than ${MAX_BENCODE_DEPTH} levels at byte ${pos}`)
      stack.push({ dict: c === CH_DICT, keys: new Set(), expectKey: true, start: pos })
      pos++
      continue
    } else {
      fail(`unexpected byte 0x${c.toString(16)} at ${pos}`)
    }
    // A value (or container) just ended: the enclosing dictionary wants a key next.
    const parent = stack[stack.length - 1]
    if (parent === undefined) return pos
    if (parent.dict) parent.expectKey = true
  }
}

function checkInput (buf: Uint8Array, maxBytes: number): void {
  if (!(buf instanceof Uint8Array)) fail('input is not a byte array')
  if (buf.length === 0) fail('empty input')
  if (buf.length > maxBytes) fail(`input of ${buf.length} bytes exceeds the ${maxBytes}-byte limit`)
}

/** Decodes exactly one value spanning the whole input; strings stay bytes. */
export function decodeBencode (buf: Uint8Array, opts: { maxBytes?: number } = {}): BencodeValue {
  checkInput(buf, opts.maxBytes ?? MAX_BENCODE_BYTES)
  const end = bencodeValueEnd(buf, 0)
  if (end !== buf.length) fail(`${buf.length - end} trailing bytes after the value (at byte ${end})`)
  try {
    return bencode.decode(buf) as BencodeValue
  } catch (err) {
    throw new SiError('ERR_INVALID_BENCODE', `undecodable: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  }
}

export function encodeBencode (value: unknown): Buffer {
  const out = bencode.encode(value)
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength)
}

/**
 * The entries of the dictionary that makes up the whole input, with the exact byte span
 * of each value, so a sub-value can be hashed or re-emitted without re-encoding it.
 */
export function rawDictEntries (buf: Uint8Array, opts: { maxBytes?: number } = {}): RawDictEntry[] {
  checkInput(buf, opts.maxBytes ?? MAX_BENCODE_BYTES)
  const end = bencodeValueEnd(buf, 0)
  if (end !== buf.length) fail(`${buf.length - end} trailing bytes after the value (at byte ${end})`)
  if (buf[0] !== CH_DICT) fail('not a dictionary')
  const entries: RawDictEntry[] = []
  let pos = 1
  while (buf[pos] !== CH_END) {
    const { dataStart, end: keyEnd } = scanString(buf, pos)
    const valueEnd = bencodeValueEnd(buf, keyEnd)
    entries.push({ key: Buffer.from(buf.subarray(dataStart, keyEnd)), valueStart: keyEnd, valueEnd })
    pos = valueEnd
  }
  return entries
}

/**
 * Emits a dictionary from raw, already-encoded values, sorted by key bytes as BEP 3
 * requires. Lets callers splice in a sub-value byte for byte.
 */
export function encodeRawDict (entries: Array<{ key: Buffer; value: Uint8Array }>): Buffer {
  const sorted = [...entries].sort((a, b) => Buffer.compare(a.key, b.key))
  const parts: Uint8Array[] = [Buffer.from('d')]
  for (const { key, value } of sorted) {
    parts.push(Buffer.from(`${key.length}:`, 'latin1'), key, value)
  }
  parts.push(Buffer.from('e'))
  return Buffer.concat(parts)
}

export function isBencodeDict (v: unknown): v is BencodeDict {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v)
}
