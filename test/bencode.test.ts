// The one bencode decoder and encoder: each strictness rule has a case that a lax decoder
// would accept.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  bencodeKey, decodeBencode, decodeBencodeWithEntries, decodeFirstBencodeValue, encodeBencode, encodeRawDict,
  isBencodeDict, MAX_BENCODE_DEPTH
} from '../src/torrent/bencode.ts'
import { isSiError } from '../src/errors.ts'

function refused (text: string | Uint8Array, pattern: RegExp, opts?: { maxBytes?: number }): void {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'latin1') : text
  assert.throws(() => decodeBencode(bytes, opts), (err: unknown) => {
    assert.ok(isSiError(err, 'ERR_INVALID_BENCODE'), `expected ERR_INVALID_BENCODE for ${JSON.stringify(String(text))}, got ${String(err)}`)
    assert.match(err.message, pattern)
    return true
  })
}

test('decodes integers, byte strings, lists and dictionaries in one pass', () => {
  assert.equal(decodeBencode(Buffer.from('i42e')), 42)
  assert.equal(decodeBencode(Buffer.from('i-7e')), -7)
  assert.equal(decodeBencode(Buffer.from('i0e')), 0)
  assert.equal(decodeBencode(Buffer.from(`i${Number.MAX_SAFE_INTEGER}e`)), Number.MAX_SAFE_INTEGER)
  assert.equal(decodeBencode(Buffer.from(`i-${Number.MAX_SAFE_INTEGER}e`)), -Number.MAX_SAFE_INTEGER)
  const text = decodeBencode(Buffer.from('4:spam'))
  assert.ok(text instanceof Uint8Array)
  assert.equal(Buffer.from(text).toString(), 'spam')
  assert.deepEqual(decodeBencode(Buffer.from('0:')), new Uint8Array(0))
  const value = decodeBencode(Buffer.from('d4:listli1ei2ee3:subd1:xi3eee'))
  assert.ok(isBencodeDict(value))
  assert.deepEqual(value.list, [1, 2])
  assert.deepEqual(value.sub, { x: 3 })
})

test('keys out of order are accepted, as other clients write them', () => {
  assert.deepEqual(decodeBencode(Buffer.from('d1:bi1e1:ai2ee')), { b: 1, a: 2 })
})

test('a duplicate key is refused, sorted or not', () => {
  refused('d1:ai1e1:ai2ee', /duplicate key "a"/)
  refused('d1:ai1e1:bi0e1:ai2ee', /duplicate key "a"/)
})

test('trailing bytes after the value are refused', () => {
  refused('i1ei2e', /3 trailing bytes/)
  refused('dex', /1 trailing bytes/)
  // ...where the caller that must tell them apart gets the value and where it ended
  assert.deepEqual(decodeFirstBencodeValue(Buffer.from('i1eXYZ')), { value: 1, end: 3 })
})

test('leading zeros are refused in integers and string lengths', () => {
  refused('i03e', /leading zero/)
  refused('i-03e', /leading zero/)
  refused('d01:ai1ee', /leading zero/)
  refused('02:ab', /leading zero/)
})

test('negative zero is refused', () => {
  refused('i-0e', /negative zero/)
})

test('integers must be safe integers, and the error names the field', () => {
  refused(`i${Number.MAX_SAFE_INTEGER + 1}e`, /not a safe integer/)
  refused('i99999999999999999999999e', /not a safe integer/)
  refused('d4:infod6:lengthi9007199254740993eee', /integer at "info\.length"/)
  refused('ie', /no digits/)
  refused('i-e', /no digits/)
  refused('i1.5e', /unexpected byte/)
})

test('truncated input, bad bytes and non-string keys are refused with where they are', () => {
  refused('', /empty input/)
  refused('l', /truncated/)
  refused('5:abc', /truncated \(needs 5 bytes\)/)
  refused('d3:key', /truncated/)
  refused('d1:ae', /key without value/)
  refused('di1ei2ee', /key at byte 1 is not a string/)
  refused('x', /unexpected byte 0x78 at 0/)
  refused('l4:spamxe', /unexpected byte 0x78 at 7 at "\[1\]"/)
})

test('depth and size are bounded', () => {
  const deepest = 'l'.repeat(MAX_BENCODE_DEPTH) + 'e'.repeat(MAX_BENCODE_DEPTH)
  assert.ok(Array.isArray(decodeBencode(Buffer.from(deepest))))
  refused('l'.repeat(MAX_BENCODE_DEPTH + 1) + 'e'.repeat(MAX_BENCODE_DEPTH + 1), /nested deeper than 64/)
  refused('d1:a' + 'l'.repeat(MAX_BENCODE_DEPTH) + 'e'.repeat(MAX_BENCODE_DEPTH) + 'e', /nested deeper/)
  refused('4:spam', /exceeds the 5-byte limit/, { maxBytes: 5 })
  assert.equal(Buffer.from(decodeBencode(Buffer.from('4:spam'), { maxBytes: 6 }) as Uint8Array).toString(), 'spam')
})

test('decoded strings are copies, not views of the input', () => {
  const input = Buffer.from('4:spam')
  const value = decodeBencode(input) as Uint8Array
  input.fill(0)
  assert.equal(Buffer.from(value).toString(), 'spam')
})

test('binary keys survive a round trip byte for byte', () => {
  const hash = Buffer.from('00ff80c3a9' + '11'.repeat(15), 'hex')
  const encoded = encodeBencode({ files: new Map([[hash, { complete: 1 }]]) })
  assert.deepEqual(encoded, Buffer.concat([Buffer.from('d5:filesd20:'), hash, Buffer.from('d8:completei1eeee')]))
  const decoded = decodeBencode(encoded)
  assert.ok(isBencodeDict(decoded) && isBencodeDict(decoded.files))
  assert.deepEqual(Object.keys(decoded.files), [bencodeKey(hash)])
  assert.deepEqual(encodeBencode(decoded), encoded, 'a decoded dictionary re-encodes to the same bytes')
})

test('a key named __proto__ is data, not the prototype', () => {
  const decoded = decodeBencode(Buffer.from('d9:__proto__i1ee'))
  assert.ok(isBencodeDict(decoded))
  assert.equal(Object.getPrototypeOf(decoded), Object.prototype)
  assert.deepEqual(Object.keys(decoded), ['__proto__'])
  assert.deepEqual(encodeBencode(decoded), Buffer.from('d9:__proto__i1ee'))
})

test('the encoder sorts keys by raw bytes, whatever the input form', () => {
  // By UTF-16 code units 'Z' < 'a' < 'é'; by bytes (latin1 keys) the same, and 0xff sorts last.
  const byObject = encodeBencode({ b: 1, a: 2, Z: 3, '\u00ff': 4 })
  assert.deepEqual(byObject, Buffer.from('d1:Zi3e1:ai2e1:bi1e1:\u00ffi4ee', 'latin1'))
  const byMap = encodeBencode(new Map<string | Uint8Array, number>([[Buffer.from([0xff]), 4], ['b', 1], [Buffer.from('a'), 2], ['Z', 3]]))
  assert.deepEqual(byMap, byObject)
  assert.deepEqual(encodeRawDict([{ key: Buffer.from('b'), value: Buffer.from('i1e') }, { key: Buffer.from('a'), value: Buffer.from('i2e') }]), Buffer.from('d1:ai2e1:bi1ee'))
})

test('the encoder writes strings as UTF-8, bytes as they are, integers in full, and skips undefined values', () => {
  assert.deepEqual(encodeBencode('héllo'), Buffer.from('6:héllo'))
  assert.deepEqual(encodeBencode(new Uint8Array([0, 255])), Buffer.from([0x32, 0x3a, 0, 255]))
  assert.deepEqual(encodeBencode(Buffer.from('ab')), Buffer.from('2:ab'))
  assert.deepEqual(encodeBencode(1e21), Buffer.from('i1000000000000000000000e'))
  assert.deepEqual(encodeBencode(-5), Buffer.from('i-5e'))
  assert.deepEqual(encodeBencode(12n), Buffer.from('i12e'))
  assert.deepEqual(encodeBencode([1, 'a', [{ k: undefined, v: 0 }]]), Buffer.from('li1e1:ald1:vi0eeee'))
})

test('the encoder refuses what it cannot write faithfully', () => {
  const refusedEncode = (value: unknown, pattern: RegExp): void => {
    assert.throws(() => encodeBencode(value as never), (err: unknown) => isSiError(err, 'ERR_INVALID_BENCODE') && pattern.test(err.message))
  }
  refusedEncode(1.5, /1\.5 is not an integer/)
  refusedEncode({ a: { b: NaN } }, /at "a\.b": NaN is not an integer/)
  refusedEncode([null], /cannot encode null/)
  refusedEncode(true, /cannot encode boolean/)
  refusedEncode({ '\u0100': 1 }, /not one byte per character/)
  refusedEncode(new Map<string | Uint8Array, number>([['a', 1], [Buffer.from('a'), 2]]), /duplicate key "a"/)
})

test('the top dictionary\'s value spans are the bytes as sent', () => {
  const input = Buffer.from('d1:bi10e1:ad1:xi1eee')
  const { value, entries } = decodeBencodeWithEntries(input)
  assert.ok(isBencodeDict(value))
  assert.deepEqual(entries.map(e => [e.key.toString(), input.subarray(e.valueStart, e.valueEnd).toString()]), [['b', 'i10e'], ['a', 'd1:xi1ee']])
  assert.deepEqual(decodeBencodeWithEntries(Buffer.from('li1ee')).entries, [])
})
