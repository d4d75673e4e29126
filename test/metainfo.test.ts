import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeBencode, encodeBencode, MAX_BENCODE_BYTES, type BencodeInput } from '../src/torrent/bencode.ts'
import {
  createTorrent, GIB, LARGE_IMAGE_PIECE_LENGTH, MEDIUM_IMAGE_MAX_BYTES, MEDIUM_IMAGE_PIECE_LENGTH, MIB,
  parseTorrent, pieceLengthFor, pieceSize, SMALL_IMAGE_MAX_BYTES, SMALL_IMAGE_PIECE_LENGTH, withTrackers
} from '../src/torrent/metainfo.ts'
import { isSiError } from '../src/errors.ts'

const PIECE = 16 * 1024
const FILE_BYTES = 3 * PIECE + 1234

async function fixture (t: { after(fn: () => Promise<void>): void }): Promise<{ file: string; data: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), 'si-metainfo-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const data = randomBytes(FILE_BYTES)
  const file = join(dir, 'image.tar')
  await writeFile(file, data)
  return { file, data }
}

function goodInfo (): Record<string, BencodeInput | undefined> {
  return { length: 2 * PIECE, name: 'img.tar', 'piece length': PIECE, pieces: Buffer.alloc(40, 7) }
}

function torrentWith (info: Record<string, BencodeInput | undefined>, top: Record<string, BencodeInput> = {}): Buffer {
  return encodeBencode({ announce: 'http://10.0.0.1:6969/announce', ...top, info })
}

function rejects (buf: Uint8Array, field: RegExp): void {
  assert.throws(() => parseTorrent(buf), (err: unknown) => {
    assert.ok(isSiError(err, 'ERR_INVALID_TORRENT'), `expected ERR_INVALID_TORRENT, got ${String(err)}`)
    assert.match(err.message, field)
    return true
  })
}

test('pieceLengthFor picks 1, 2 and 4 MiB at the published thresholds', () => {
  assert.equal(SMALL_IMAGE_MAX_BYTES, 1 * GIB)
  assert.equal(MEDIUM_IMAGE_MAX_BYTES, 8 * GIB)
  assert.equal(pieceLengthFor(1), SMALL_IMAGE_PIECE_LENGTH)
  assert.equal(pieceLengthFor(SMALL_IMAGE_MAX_BYTES), 1 * MIB)
  assert.equal(pieceLengthFor(SMALL_IMAGE_MAX_BYTES + 1), MEDIUM_IMAGE_PIECE_LENGTH)
  assert.equal(pieceLengthFor(MEDIUM_IMAGE_MAX_BYTES), 2 * MIB)
  assert.equal(pieceLengthFor(MEDIUM_IMAGE_MAX_BYTES + 1), LARGE_IMAGE_PIECE_LENGTH)
  assert.equal(pieceLengthFor(100 * GIB), 4 * MIB)
})

test('create then parse round-trips every field and hashes every piece', async t => {
  const { file, data } = await fixture(t)
  const progress: number[] = []
  const raw = await createTorrent({
    file,
    name: 'centos-3.tar',
    pieceLength: PIECE,
    announce: ['http://10.0.0.1:6969/announce', 'http://10.0.0.2:6969/announce', 'http://10.0.0.1:6969/announce'],
    urlList: ['http://10.0.0.1:8080/images/centos/3/image.tar'],
    comment: 'golden client 3',
    onProgress: done => progress.push(done)
  })
  const meta = parseTorrent(raw)
  assert.equal(meta.name, 'centos-3.tar')
  assert.equal(meta.length, FILE_BYTES)
  assert.equal(meta.pieceLength, PIECE)
  assert.equal(meta.pieceCount, 4)
  assert.deepEqual(meta.announce, ['http://10.0.0.1:6969/announce', 'http://10.0.0.2:6969/announce'])
  assert.deepEqual(meta.urlList, ['http://10.0.0.1:8080/images/centos/3/image.tar'])
  assert.equal(meta.comment, 'golden client 3')
  assert.equal(meta.createdBy, 'swarmimager')
  assert.deepEqual(progress, [PIECE, 2 * PIECE, 3 * PIECE, FILE_BYTES])
  for (let i = 0; i < meta.pieceCount; i++) {
    const piece = data.subarray(i * PIECE, i * PIECE + pieceSize(meta, i))
    assert.deepEqual(meta.pieceHashes[i], createHash('sha1').update(piece).digest(), `piece ${i}`)
  }
  assert.equal(pieceSize(meta, 3), 1234)
  assert.throws(() => pieceSize(meta, 4), (err: unknown) => isSiError(err, 'ERR_INVALID_ARGUMENT'))

  const top = decodeBencode(raw) as Record<string, any>
  assert.equal(top.info.private, undefined, 'private would disable PEX (and LSD and DHT, once built)')
  const expected = createHash('sha1').update(encodeBencode(top.info)).digest()
  assert.deepEqual(meta.infoHash, expected)
  assert.equal(meta.infoHashHex, expected.toString('hex'))
  assert.deepEqual(meta.raw, raw)

  // Same file, same options: same identity.
  const again = parseTorrent(await createTorrent({ file, name: 'centos-3.tar', pieceLength: PIECE }))
  assert.equal(again.infoHashHex, meta.infoHashHex)
})

test('a torrent made without trackers has none at all', async t => {
  const { file } = await fixture(t)
  const raw = await createTorrent({ file, name: 'x.tar', pieceLength: PIECE })
  const top = decodeBencode(raw) as Record<string, unknown>
  assert.deepEqual(Object.keys(top).sort(), ['created by', 'info'])
  assert.deepEqual(parseTorrent(raw).announce, [])
})

test('withTrackers swaps trackers and web seeds but keeps the info hash and other keys', async t => {
  const { file } = await fixture(t)
  const raw = await createTorrent({ file, name: 'x.tar', pieceLength: PIECE, announce: ['http://old/announce'], urlList: ['http://old/x.tar'], comment: 'keep me' })
  const before = parseTorrent(raw)
  const out = withTrackers(raw, { announce: ['http://a/announce', 'http://b/announce'], urlList: ['http://a/x.tar'] })
  const after = parseTorrent(out)
  assert.equal(after.infoHashHex, before.infoHashHex)
  assert.deepEqual(after.announce, ['http://a/announce', 'http://b/announce'])
  assert.deepEqual(after.urlList, ['http://a/x.tar'])
  assert.equal(after.comment, 'keep me')
  const top = decodeBencode(out) as Record<string, any>
  assert.deepEqual(top['announce-list'].map((tier: Uint8Array[]) => tier.map(u => Buffer.from(u).toString())), [['http://a/announce'], ['http://b/announce']])

  const bare = parseTorrent(withTrackers(out, {}))
  assert.equal(bare.infoHashHex, before.infoHashHex)
  assert.deepEqual(bare.announce, [])
  assert.deepEqual(bare.urlList, [])
})

test('the info hash covers the info bytes as sent, unknown keys included', () => {
  // Unknown key and non-canonical key order: re-encoding would change both.
  const infoBytes = Buffer.concat([
    Buffer.from('d4:name7:img.tar6:lengthi32768e12:piece lengthi16384e6:pieces40:'),
    Buffer.alloc(40, 7),
    Buffer.from('7:x-extra5:helloe')
  ])
  const raw = Buffer.concat([Buffer.from('d8:announce4:http4:info'), infoBytes, Buffer.from('e')])
  const meta = parseTorrent(raw)
  assert.deepEqual(meta.infoHash, createHash('sha1').update(infoBytes).digest())
  const moved = withTrackers(raw, { announce: ['http://new/announce'] })
  assert.ok(moved.includes(infoBytes), 'info bytes are carried over verbatim')
  assert.equal(parseTorrent(moved).infoHashHex, meta.infoHashHex)
})

test('createTorrent honours an abort signal and refuses unsafe names', async t => {
  const { file } = await fixture(t)
  const ac = new AbortController()
  ac.abort()
  await assert.rejects(createTorrent({ file, name: 'x.tar', signal: ac.signal }), (err: unknown) => isSiError(err, 'ERR_ABORTED'))
  await assert.rejects(createTorrent({ file, name: '../x.tar' }), (err: unknown) => isSiError(err, 'ERR_INVALID_ARGUMENT'))
  await assert.rejects(createTorrent({ file, name: 'x.tar', pieceLength: 1000 }), (err: unknown) => isSiError(err, 'ERR_INVALID_ARGUMENT'))
  await assert.rejects(createTorrent({ file: file + '.missing', name: 'x.tar' }), (err: unknown) => isSiError(err, 'ERR_SOURCE_NOT_FOUND'))
})

test('a truncated torrent is rejected as invalid bencode', () => {
  const raw = torrentWith(goodInfo())
  parseTorrent(raw)
  rejects(raw.subarray(0, raw.length - 10), /bencode.*truncated/)
  rejects(raw.subarray(0, 1), /bencode/)
  rejects(Buffer.alloc(0), /bencode.*empty/)
})

test('trailing garbage after the dictionary is rejected', () => {
  rejects(Buffer.concat([torrentWith(goodInfo()), Buffer.from('xyz')]), /trailing bytes/)
})

test('a torrent that is not a dictionary is rejected', () => {
  rejects(encodeBencode([1, 2]), /not a dictionary/)
  rejects(encodeBencode(42), /not a dictionary/)
  rejects(encodeBencode({ info: 'nope' }), /"info" is not a dictionary/)
  rejects(encodeBencode({ announce: 'x' }), /"info" is missing/)
})

test('bad piece lengths are rejected naming the field', () => {
  for (const bad of [12345, 8 * 1024, 128 * MIB, 0, -PIECE, 'x']) {
    rejects(torrentWith({ ...goodInfo(), 'piece length': bad }), /piece length/)
  }
})

test('a pieces string of the wrong size is rejected naming the field', () => {
  rejects(torrentWith({ ...goodInfo(), pieces: Buffer.alloc(39) }), /"info\.pieces".*39 bytes, expected 40/)
  rejects(torrentWith({ ...goodInfo(), pieces: Buffer.alloc(60) }), /"info\.pieces"/)
  rejects(torrentWith({ ...goodInfo(), pieces: undefined }), /"info\.pieces"/)
})

test('bad lengths are rejected naming the field', () => {
  for (const bad of [0, -1, 'big']) rejects(torrentWith({ ...goodInfo(), length: bad }), /"info\.length"/)
  rejects(torrentWith({ ...goodInfo(), length: 2 ** 53 + 2 }), /"info\.length"/)
})

test('multi-file torrents are not supported', () => {
  const { length, ...rest } = goodInfo()
  rejects(torrentWith({ ...rest, files: [{ length, path: ['a'] }] }), /multi-file torrents are not supported/)
})

test('names that are not one safe path component are rejected', () => {
  for (const bad of ['a/b.tar', '..', '.', '', 'a\\b', 'x\0y']) {
    rejects(torrentWith({ ...goodInfo(), name: bad }), /"info\.name"/)
  }
  rejects(torrentWith({ ...goodInfo(), name: Buffer.from([0xff, 0xfe]) }), /"info\.name".*UTF-8/)
})

test('duplicate dictionary keys and hostile nesting are refused by the decoder', () => {
  rejects(Buffer.from('d4:infod6:lengthi1e6:lengthi2eee'), /duplicate key "length"/)
  rejects(Buffer.from('l'.repeat(100_000)), /nested deeper/)
  assert.throws(() => decodeBencode(Buffer.alloc(MAX_BENCODE_BYTES + 1, 0x30)), (err: unknown) => isSiError(err, 'ERR_INVALID_BENCODE'))
})
