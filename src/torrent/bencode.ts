// Bencode (BEP 3), strictly. One pass over the input builds the value while checking it,
// so every caller (metainfo, the peer wire's extended handshake, PEX, tracker replies on
// both sides) sees either a well-formed value or an SiError saying where it went wrong.
//
// Dictionary keys are JavaScript strings holding one character per key byte (latin1):
// keys are byte strings, and BEP 48 keys a scrape's `files` by raw 20-byte hashes, which
// UTF-8 would mangle. `bencodeKey` turns bytes into such a key; the encoder writes a
// string key back byte for byte, so a decoded dictionary re-encodes to the same bytes.
// String values stay bytes (Uint8Array): only the caller knows whether they are text.
import { SiError } from '../errors.ts'

/** Larger than any torrent or tracker reply we produce; bounds memory per decode. */
export const MAX_BENCODE_BYTES = 16 * 1024 * 1024
/** Torrents nest four levels deep at most; anything far deeper is hostile. */
export const MAX_BENCODE_DEPTH = 64
/** Digits of Number.MAX_SAFE_INTEGER: an integer with more cannot be exact. */
const MAX_SAFE_DIGITS = 16

const CH_INT = 0x69 // i
const CH_LIST = 0x6c // l
const CH_DICT = 0x64 // d
const CH_END = 0x65 // e
const CH_COLON = 0x3a // :
const CH_MINUS = 0x2d // -
const CH_0 = 0x30
const CH_9 = 0x39
const LIST_START = Buffer.from('l')
const DICT_START = Buffer.from('d')
const END = Buffer.from('e')

export type BencodeValue = number | Uint8Array | BencodeValue[] | BencodeDict
/** Keys are latin1 strings, one character per key byte (see the head of this file). */
export interface BencodeDict { [key: string]: BencodeValue }

/** What the encoder takes: strings go out as UTF-8, numbers must be integers, undefined dictionary values are left out. */
export type BencodeInput =
  | number
  | bigint
  | string
  | Uint8Array
  | readonly BencodeInput[]
  | ReadonlyMap<string | Uint8Array, BencodeInput | undefined>
  | { readonly [key: string]: BencodeInput | undefined }

/** One key of a dictionary with the byte span of its value in the original input. */
export interface RawDictEntry { key: Buffer; valueStart: number; valueEnd: number }

export interface DecodeOptions {
  /** Refuse inputs longer than this (default MAX_BENCODE_BYTES). */
  maxBytes?: number
}

function fail (message: string): never {
  throw new SiError('ERR_INVALID_BENCODE', message)
}

/** The dictionary key for these bytes (latin1: one character per byte). */
export function bencodeKey (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}

export function isBencodeDict (v: unknown): v is BencodeDict {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) && !(v instanceof Map)
}

/**
 * Reads values out of one input. `path` names the value being read ("info.length",
 * "peers[3].ip") so that an error says where, not only at which byte.
 */
class Decoder {
  pos = 0
  /** Spans of the outermost dictionary's values, when the input is one. */
  readonly topEntries: RawDictEntry[] = []
  private depth = 0

  constructor (private readonly buf: Uint8Array) {}

  value (path: string): BencodeValue {
    const c = this.peek(path)
    if (c === CH_INT) return this.integer(path)
    if (c >= CH_0 && c <= CH_9) return this.string(path)
    if (c === CH_LIST || c === CH_DICT) {
      if (this.depth >= MAX_BENCODE_DEPTH) fail(`nested deeper than ${MAX_BENCODE_DEPTH} levels at byte ${this.pos}`)
      this.depth++
      const value = c === CH_LIST ? this.list(path) : this.dict(path)
      this.depth--
      return value
    }
    return fail(`unexpected byte 0x${c.toString(16)} at ${this.pos}${where(path)}`)
  }

  private peek (path: string): number {
    if (this.pos >= this.buf.length) fail(`truncated at byte ${this.pos}${where(path)}`)
    return this.buf[this.pos]
  }

  /** An unsigned decimal up to `terminator`, which is consumed. */
  private decimal (terminator: number, what: string): number {
    const start = this.pos
    let value = 0
    for (;;) {
      const c = this.peek(what)
      if (c === terminator) break
      if (c < CH_0 || c > CH_9) fail(`${what} at byte ${start}: unexpected byte 0x${c.toString(16)} at ${this.pos}`)
      value = value * 10 + (c - CH_0)
      this.pos++
    }
    const digits = this.pos - start
    if (digits === 0) fail(`${what} at byte ${start}: no digits`)
    if (digits > 1 && this.buf[start] === CH_0) fail(`${what} at byte ${start}: leading zero`)
    if (digits > MAX_SAFE_DIGITS || !Number.isSafeInteger(value)) fail(`${what} at byte ${start}: not a safe integer (more than 2^53 - 1)`)
    this.pos++
    return value
  }

  private integer (path: string): number {
    const start = this.pos++
    const negative = this.peek(path) === CH_MINUS
    if (negative) this.pos++
    const value = this.decimal(CH_END, `integer${where(path)}`)
    if (negative && value === 0) fail(`integer${where(path)} at byte ${start}: negative zero`)
    return negative ? -value : value
  }

  private stringSpan (path: string): [number, number] {
    const at = this.pos
    const length = this.decimal(CH_COLON, `string length${where(path)}`)
    const start = this.pos
    if (length > this.buf.length - start) fail(`string${where(path)} at byte ${at}: truncated (needs ${length} bytes)`)
    this.pos = start + length
    return [start, this.pos]
  }

  private string (path: string): Uint8Array {
    const [start, end] = this.stringSpan(path)
    // A copy: the input may be a socket's chunk, which must not stay alive for one small value.
    return new Uint8Array(this.buf.subarray(start, end))
  }

  private list (path: string): BencodeValue[] {
    this.pos++
    const out: BencodeValue[] = []
    while (this.peek(path) !== CH_END) out.push(this.value(`${path}[${out.length}]`))
    this.pos++
    return out
  }

  private dict (path: string): BencodeDict {
    const at = this.pos++
    const outermost = this.depth === 1
    const out: BencodeDict = {}
    while (this.peek(path) !== CH_END) {
      const c = this.buf[this.pos]
      if (c < CH_0 || c > CH_9) fail(`dictionary${where(path)} at byte ${at}: key at byte ${this.pos} is not a string`)
      const [keyStart, keyEnd] = this.stringSpan(path)
      const key = bencodeKey(this.buf.subarray(keyStart, keyEnd))
      // Two values for one key would let two readers see two different documents in the same bytes.
      if (Object.hasOwn(out, key)) fail(`dictionary${where(path)} at byte ${at}: duplicate key ${JSON.stringify(key)}`)
      const valueStart = this.pos
      if (this.peek(path) === CH_END) fail(`dictionary${where(path)} at byte ${at}: key without value`)
      // defineProperty, not assignment: a key "__proto__" is data, not the object's prototype.
      Object.defineProperty(out, key, { value: this.value(path === '' ? key : `${path}.${key}`), enumerable: true, writable: true, configurable: true })
      if (outermost) this.topEntries.push({ key: Buffer.from(this.buf.subarray(keyStart, keyEnd)), valueStart, valueEnd: this.pos })
    }
    this.pos++
    return out
  }
}

function where (path: string): string {
  return path === '' ? '' : ` at "${path}"`
}

/** Reads the one value that starts the input; what follows it is the caller's to judge. */
function decodeFirst (buf: Uint8Array, opts: DecodeOptions): { decoder: Decoder; value: BencodeValue } {
  if (!(buf instanceof Uint8Array)) fail('input is not a byte array')
  if (buf.length === 0) fail('empty input')
  const maxBytes = opts.maxBytes ?? MAX_BENCODE_BYTES
  if (buf.length > maxBytes) fail(`input of ${buf.length} bytes exceeds the ${maxBytes}-byte limit`)
  const decoder = new Decoder(buf)
  return { decoder, value: decoder.value('') }
}

function decodeWhole (buf: Uint8Array, opts: DecodeOptions): { decoder: Decoder; value: BencodeValue } {
  const first = decodeFirst(buf, opts)
  const end = first.decoder.pos
  if (end !== buf.length) fail(`${buf.length - end} trailing bytes after the value (at byte ${end})`)
  return first
}

/** Decodes exactly one value spanning the whole input. */
export function decodeBencode (buf: Uint8Array, opts: DecodeOptions = {}): BencodeValue {
  return decodeWhole(buf, opts).value
}

/**
 * Decodes exactly one value spanning the whole input and, when it is a dictionary, gives
 * the exact byte span of each of its values, so that a sub-value can be hashed or carried
 * over without re-encoding it.
 */
export function decodeBencodeWithEntries (buf: Uint8Array, opts: DecodeOptions = {}): { value: BencodeValue; entries: RawDictEntry[] } {
  const { decoder, value } = decodeWhole(buf, opts)
  return { value, entries: decoder.topEntries }
}

/**
 * The value at the start of the input and the offset just past it, for a caller that
 * must tell "one value, then more bytes" from "no value at all" (a tracker reply).
 */
export function decodeFirstBencodeValue (buf: Uint8Array, opts: DecodeOptions = {}): { value: BencodeValue; end: number } {
  const { decoder, value } = decodeFirst(buf, opts)
  return { value, end: decoder.pos }
}

/** Encodes a value; dictionary keys are sorted by their raw bytes, as BEP 3 requires. */
export function encodeBencode (value: BencodeInput): Buffer {
  const parts: Uint8Array[] = []
  encodeInto(value, parts, '')
  return Buffer.concat(parts)
}

function encodeInto (value: BencodeInput, parts: Uint8Array[], path: string): void {
  if (typeof value === 'number' || typeof value === 'bigint') {
    if (typeof value === 'number' && !Number.isInteger(value)) refuse(path, `${value} is not an integer`)
    // BigInt spells every integer out in digits, where Number would write 1e+21.
    parts.push(Buffer.from(`i${BigInt(value).toString()}e`, 'latin1'))
  } else if (typeof value === 'string') {
    pushString(Buffer.from(value, 'utf8'), parts)
  } else if (value instanceof Uint8Array) {
    pushString(value, parts)
  } else if (Array.isArray(value)) {
    parts.push(LIST_START)
    value.forEach((item: BencodeInput, i: number) => encodeInto(item, parts, `${path}[${i}]`))
    parts.push(END)
  } else if (value instanceof Map) {
    encodeDict([...value], parts, path)
  } else if (typeof value === 'object' && value !== null && !ArrayBuffer.isView(value)) {
    encodeDict(Object.entries(value), parts, path)
  } else {
    refuse(path, `cannot encode ${value === null ? 'null' : typeof value}`)
  }
}

function encodeDict (entries: Array<[string | Uint8Array, BencodeInput | undefined]>, parts: Uint8Array[], path: string): void {
  const keyed = entries
    .filter((entry): entry is [string | Uint8Array, BencodeInput] => entry[1] !== undefined)
    .map(([key, item]) => ({ key: keyBytes(key, path), item }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
  parts.push(DICT_START)
  for (let i = 0; i < keyed.length; i++) {
    const { key, item } = keyed[i]
    const name = bencodeKey(key)
    if (i > 0 && keyed[i - 1].key.equals(key)) refuse(path, `duplicate key ${JSON.stringify(name)}`)
    pushString(key, parts)
    encodeInto(item, parts, path === '' ? name : `${path}.${name}`)
  }
  parts.push(END)
}

/** A string key is latin1, as the decoder makes them; a character above U+00FF has no byte. */
function keyBytes (key: string | Uint8Array, path: string): Buffer {
  if (typeof key !== 'string') return Buffer.from(key.buffer, key.byteOffset, key.byteLength)
  if (/[^\u0000-\u00ff]/.test(key)) refuse(path, `key ${JSON.stringify(key)} is not one byte per character (see bencodeKey)`)
  return Buffer.from(key, 'latin1')
}

function pushString (bytes: Uint8Array, parts: Uint8Array[]): void {
  parts.push(Buffer.from(`${bytes.length}:`, 'latin1'), bytes)
}

function refuse (path: string, problem: string): never {
  throw new SiError('ERR_INVALID_BENCODE', `cannot encode${where(path)}: ${problem}`)
}

/**
 * Emits a dictionary from raw, already-encoded values, sorted by key bytes as BEP 3
 * requires. Lets callers splice in a sub-value byte for byte.
 */
export function encodeRawDict (entries: Array<{ key: Buffer; value: Uint8Array }>): Buffer {
  const sorted = [...entries].sort((a, b) => Buffer.compare(a.key, b.key))
  const parts: Uint8Array[] = [DICT_START]
  for (const { key, value } of sorted) {
    pushString(key, parts)
    parts.push(value)
  }
  parts.push(END)
  return Buffer.concat(parts)
}
