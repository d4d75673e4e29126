import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WireReader, encodeHandshake, encodeMessageHead, type Handshake } from '../src/swarm/wire-reader.ts'

const INFO_HASH = Buffer.alloc(20, 0xab)
const PEER_ID = Buffer.alloc(20, 0xcd)
const HANDSHAKE = encodeHandshake(INFO_HASH, PEER_ID)

function message (id: number, body: Buffer | number): Buffer {
  const payload = typeof body === 'number' ? Buffer.alloc(body) : body
  return Buffer.concat([encodeMessageHead(id, [], payload.length), payload])
}

function reader (pieceCount?: number): { r: WireReader; handshakes: Handshake[]; messages: Array<[number, Buffer]> } {
  const handshakes: Handshake[] = []
  const messages: Array<[number, Buffer]> = []
  const r = new WireReader({ handshake: h => handshakes.push(h), message: (id, body) => messages.push([id, Buffer.from(body)]) })
  if (pieceCount !== undefined) r.setPieceCount(pieceCount)
  return { r, handshakes, messages }
}

test('well-formed traffic split at every byte comes out as the same messages', () => {
  const block = Buffer.alloc(16384, 7)
  const pieceBody = Buffer.concat([Buffer.from([0, 0, 0, 3, 0, 0, 0x40, 0]), block])
  const stream = Buffer.concat([HANDSHAKE, message(5, 3), message(4, Buffer.from([0, 0, 0, 9])), Buffer.alloc(4), message(7, pieceBody), message(20, 30)])
  const { r, handshakes, messages } = reader(20)
  for (const b of stream) r.feed(Buffer.from([b]))
  assert.equal(handshakes.length, 1)
  assert.deepEqual(handshakes[0], { infoHash: INFO_HASH, peerId: PEER_ID, extended: true })
  assert.deepEqual(messages.map(([id, body]) => [id, body.length]), [[5, 3], [4, 4], [7, 8 + 16384], [20, 30]])
  assert.ok(messages[2][1].subarray(8).equals(block))
})

test('traffic read into one reused buffer, overwritten after every feed, at every split size: the same messages, kept bodies intact', () => {
  const block = Buffer.alloc(16384).map((_, i) => i * 7)
  const pieceBody = Buffer.concat([Buffer.from([0, 0, 0, 3, 0, 0, 0x40, 0]), block])
  const stream = Buffer.concat([HANDSHAKE, message(5, Buffer.alloc(3, 0xf0)), message(4, Buffer.from([0, 0, 0, 9])), Buffer.alloc(4),
    message(7, pieceBody), message(7, pieceBody), message(20, Buffer.alloc(30, 0x5a)), message(7, pieceBody)])
  for (const size of [1, 5, 13, 4096, 16393, 20000, 65536]) {
    const handshakes: Handshake[] = []
    const kept: Array<[number, Buffer]> = []
    const pieceChecks: boolean[] = []
    // Non-piece bodies are kept as handed over; a piece body is checked during the call only.
    const r = new WireReader({
      handshake: h => handshakes.push(h),
      message: (id, body) => { if (id === 7) pieceChecks.push(body.equals(pieceBody)); else kept.push([id, body]) }
    })
    const shared = Buffer.alloc(size)
    for (let at = 0; at < stream.length; at += size) {
      const n = stream.copy(shared, 0, at, Math.min(stream.length, at + size))
      r.feed(shared.subarray(0, n), true)
      shared.fill(0xee)
    }
    assert.equal(handshakes.length, 1, `split ${size}`)
    assert.deepEqual(handshakes[0], { infoHash: INFO_HASH, peerId: PEER_ID, extended: true })
    assert.deepEqual(pieceChecks, [true, true, true], `split ${size}`)
    assert.deepEqual(kept.map(([id, body]) => [id, body.toString('hex')]), [[5, 'f0f0f0'], [4, '00000009'], [20, '5a'.repeat(30)]], `split ${size}`)
  }
})

test('many messages in one chunk all come out, in order', () => {
  const { r, messages } = reader(20)
  r.feed(Buffer.concat([HANDSHAKE, ...[1, 2, 3, 4, 5].map(i => message(4, Buffer.from([0, 0, 0, i])))]))
  assert.deepEqual(messages.map(([, body]) => body.readUInt32BE(0)), [1, 2, 3, 4, 5])
})

test('a huge announced length is refused before its body is buffered', () => {
  const head = Buffer.alloc(5)
  head.writeUInt32BE(0x80000000, 0)
  head[4] = 7
  const { r } = reader()
  assert.throws(() => r.feed(Buffer.concat([HANDSHAKE, head])), /message 7 of length 2147483648/)
})

test('a short have message is refused (it would be read out of bounds)', () => {
  const { r } = reader()
  assert.throws(() => r.feed(Buffer.concat([HANDSHAKE, message(4, 1)])), /message 4 of length 2: expected 5/)
})

test('a bitfield of the wrong size for the torrent is refused', () => {
  const { r } = reader(20)
  assert.throws(() => r.feed(Buffer.concat([HANDSHAKE, message(5, 100)])), /expected 4/)
})

test('a connection that does not start with a BitTorrent handshake is refused', () => {
  const { r } = reader()
  assert.throws(() => r.feed(Buffer.from('GET / HTTP/1.1\r\n\r\n')), (err: Error & { code?: string }) => err.code === 'ERR_PEER_PROTOCOL' && /does not speak the BitTorrent protocol/.test(err.message))
})

test('a handshake with the right length byte but another protocol name is refused', () => {
  const { r } = reader()
  const fake = Buffer.from(HANDSHAKE)
  fake.write('BitTorrent protocoX', 1, 'latin1')
  assert.throws(() => r.feed(fake), /does not speak the BitTorrent protocol/)
})
