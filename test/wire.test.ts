// The peer wire and the upload side of a peer, over real TCP connections on loopback.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { PeerWire } from '../src/swarm/wire.ts'
import { MESSAGE, encodeMessageHead } from '../src/swarm/wire-reader.ts'
import { Peer, dialPeer } from '../src/swarm/peer.ts'
import { PexExchange } from '../src/swarm/pex.ts'
import { DEFAULT_SWARM_CONFIG } from '../src/swarm/config.ts'
import { decodeBencode, encodeBencode, isBencodeDict } from '../src/torrent/bencode.ts'
import { isSiError } from '../src/errors.ts'

const INFO_HASH = Buffer.alloc(20, 1)
const ID_A = Buffer.alloc(20, 0xa)
const ID_B = Buffer.alloc(20, 0xb)
const PIECES = 16
const { pexIntervalMs: PEX_INTERVAL_MS, readHoldMs: READ_HOLD_MS } = DEFAULT_SWARM_CONFIG
/** A small upload queue, so that filling it takes a few dozen requests rather than thousands. */
const QUEUE_CONFIG = { maxQueuedRequests: 64, uploadHighWaterBytes: 4 * 16384 }

/** A seeding Peer over `socket` whose store never answers (requests pile up), and a bare wire unchoked by it. */
async function stuckSeed (t: TestContext, client: Socket, inbound: Socket): Promise<{ seed: Peer; leech: PeerWire }> {
  const seed = new Peer(inbound, { outgoing: false, config: QUEUE_CONFIG })
  t.after(() => seed.destroy())
  seed.wire.setPieceCount(PIECES)
  seed.serveFrom(() => new Promise<Buffer>(() => { /* a store that never answers: requests pile up */ }), () => undefined)
  seed.wire.handshake(INFO_HASH, ID_B)
  const leech = bareWire(client)
  leech.handshake(INFO_HASH, ID_A)
  seed.wire.unchoke()
  await once(leech, 'unchoke')
  return { seed, leech }
}

/** A connected pair over loopback: the dialling side (made by `dial`) and the accepted one. */
async function socketPair (t: TestContext, dial: (host: string, port: number) => Socket = (host, port) => connect(port, host)): Promise<[Socket, Socket]> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const accepted = once(server, 'connection') as Promise<[Socket]>
  const client = dial('127.0.0.1', address.port)
  await once(client, 'connect')
  const [inbound] = await accepted
  t.after(() => { client.destroy(); inbound.destroy(); server.close() })
  return [client, inbound]
}

/** A bare wire fed by its socket, as Peer feeds it; protocol errors land in `errors`. */
function bareWire (socket: Socket, errors: Error[] = []): PeerWire {
  const wire = new PeerWire(socket)
  wire.setPieceCount(PIECES)
  socket.on('data', (chunk: Buffer) => { try { wire.feed(chunk) } catch (err) { errors.push(err as Error); socket.destroy() } })
  socket.on('close', () => wire.close())
  return wire
}

async function handshaken (t: TestContext): Promise<[PeerWire, PeerWire]> {
  const [sa, sb] = await socketPair(t)
  const a = bareWire(sa)
  const b = bareWire(sb)
  a.extendedHandshake.p = 6881
  b.extendedHandshake.p = 6882
  const both = Promise.all([once(a, 'extended-handshake'), once(b, 'extended-handshake')])
  a.handshake(INFO_HASH, ID_A)
  b.handshake(INFO_HASH, ID_B)
  await both
  t.after(() => { a.close(); b.close() })
  return [a, b]
}

test('two wires exchange handshakes, extended handshakes, pieces held, and a block', async t => {
  const [a, b] = await handshaken(t)
  assert.equal(a.peerId, ID_B.toString('hex'))
  assert.equal(b.peerId, ID_A.toString('hex'))
  assert.equal(a.peerExtendedHandshake.p, 6882)
  assert.equal(b.peerExtendedHandshake.p, 6881)

  const bits = new Uint8Array(PIECES / 8)
  bits[0] = 0x80
  const haves: number[] = []
  a.on('have', (i: number) => haves.push(i))
  const arrived = Promise.all([once(a, 'bitfield'), once(a, 'have')])
  b.bitfield(bits)
  b.have(5)
  b.have(5) // a repeated have is not news
  await arrived
  assert.ok(a.peerPieces.get(0) && a.peerPieces.get(5) && !a.peerPieces.get(1))

  b.on('request', (index: number, offset: number, length: number) => b.piece(index, offset, Buffer.alloc(length, index)))
  a.interested()
  await once(b, 'interested')
  b.unchoke()
  await once(a, 'unchoke')
  const block = await new Promise<Buffer | undefined>(resolve => a.request(5, 16384, 16384, resolve))
  assert.ok(block?.equals(Buffer.alloc(16384, 5)))
  assert.deepEqual(haves, [5])
})

test('a choke fails every outstanding request before the choke event, so the blocks can go elsewhere', async t => {
  const [a, b] = await handshaken(t)
  b.unchoke()
  await once(a, 'unchoke')
  const answers: Array<Buffer | undefined> = []
  let answeredBeforeChokeEvent = -1
  a.on('choke', () => { answeredBeforeChokeEvent = answers.length })
  for (let i = 0; i < 3; i++) a.request(i, 0, 16384, block => answers.push(block))
  await once(b, 'request')
  b.choke()
  await once(a, 'choke')
  assert.deepEqual(answers, [undefined, undefined, undefined])
  assert.equal(answeredBeforeChokeEvent, 3)
  // and a request to a choking peer is answered with nothing at once
  let answered = false
  a.request(0, 0, 16384, block => { answered = block === undefined })
  assert.ok(answered)
})

test('a cancelled request is answered with nothing at once, and a late block for it is dropped', async t => {
  const [a, b] = await handshaken(t)
  b.unchoke()
  await once(a, 'unchoke')
  const answers: Array<Buffer | undefined> = []
  a.request(1, 0, 16384, block => answers.push(block))
  const [index, offset, length] = await once(b, 'request') as [number, number, number]
  a.cancel(1, 0, 16384)
  assert.deepEqual(answers, [undefined])
  b.piece(index, offset, Buffer.alloc(length))
  await once(a, 'download')
  assert.deepEqual(answers, [undefined])
})

test('requests left unanswered past the timeout end in a timeout event', async t => {
  const [a, b] = await handshaken(t)
  b.unchoke()
  await once(a, 'unchoke')
  a.setRequestTimeout(200)
  const started = Date.now()
  const answers: Array<Buffer | undefined> = []
  a.request(2, 0, 16384, block => answers.push(block))
  await once(a, 'timeout')
  assert.ok(Date.now() - started >= 190, `timed out after ${Date.now() - started} ms`)
  assert.deepEqual(answers, [undefined])
})

test('a fast-extension message that was never negotiated is a protocol error', async t => {
  const [sa, sb] = await socketPair(t)
  const errors: Error[] = []
  const a = bareWire(sa, errors)
  a.handshake(INFO_HASH, ID_A)
  const b = bareWire(sb)
  b.handshake(INFO_HASH, ID_B)
  sb.write(Buffer.from([0, 0, 0, 1, 14])) // have all
  await once(sa, 'close')
  assert.equal(errors.length, 1)
  assert.ok(isSiError(errors[0], 'ERR_PEER_PROTOCOL'))
  assert.match(errors[0].message, /fast-extension message 14/)
})

test('a peer answers requests from its store, and a block cancelled while being read is not sent', async t => {
  const [client, inbound] = await socketPair(t)
  const seed = new Peer(inbound, { outgoing: false })
  t.after(() => seed.destroy())
  seed.wire.setPieceCount(PIECES)
  const reads = new Map<string, () => void>()
  seed.serveFrom(
    (index, offset, length) => new Promise(resolve => reads.set(`${index}:${offset}`, () => resolve(Buffer.alloc(length, index)))),
    () => undefined
  )
  seed.wire.handshake(INFO_HASH, ID_B)
  const leech = bareWire(client)
  leech.handshake(INFO_HASH, ID_A)
  leech.interested()
  await once(seed.wire, 'interested')
  seed.wire.unchoke()
  await once(leech, 'unchoke')

  const answers = new Map<number, Buffer | undefined>()
  leech.request(3, 0, 16384, block => answers.set(3, block))
  leech.request(4, 0, 16384, block => answers.set(4, block))
  while (reads.size < 2) await once(seed.wire, 'request')
  leech.cancel(3, 0, 16384)
  await once(seed.wire, 'cancel')
  let uploaded = 0
  seed.wire.on('upload', (n: number) => { uploaded += n })
  reads.get('3:0')?.()
  reads.get('4:0')?.()
  await once(leech, 'download')
  assert.equal(uploaded, 16384, 'only the block still wanted went out')
  assert.equal(answers.get(3), undefined)
  assert.ok(answers.get(4)?.equals(Buffer.alloc(16384, 4)))
})

test('requests voided by our choke do not count against the queue limit once the peer asks again', async t => {
  const [client, inbound] = await socketPair(t)
  const { seed, leech } = await stuckSeed(t, client, inbound)
  // the high-water mark's worth of them is being read, the rest fill the queue to its limit
  const total = QUEUE_CONFIG.uploadHighWaterBytes / 16384 + QUEUE_CONFIG.maxQueuedRequests
  let seen = 0
  seed.wire.on('request', () => { seen++ })
  for (let i = 0; i < total; i++) leech.request(i % PIECES, (i >> 4) * 16384, 16384, () => {})
  while (seen < total) await once(seed.wire, 'request')
  assert.equal(seed.isClosed, false)
  seed.wire.choke()
  await once(leech, 'choke')
  seed.wire.unchoke()
  await once(leech, 'unchoke')
  leech.request(0, 0, 16384, () => {})
  await once(seed.wire, 'request')
  assert.equal(seed.isClosed, false, 'the peer was not dropped for requests we voided')
})

test('a peer that queues more requests than the limit is dropped', async t => {
  const [client, inbound] = await socketPair(t)
  const { seed, leech } = await stuckSeed(t, client, inbound)
  const closed = once(seed, 'close') as Promise<[Error | undefined]>
  const total = QUEUE_CONFIG.uploadHighWaterBytes / 16384 + QUEUE_CONFIG.maxQueuedRequests + 1
  for (let i = 0; i < total; i++) leech.request(i % PIECES, (i >> 4) * 16384, 16384, () => {})
  const [err] = await closed
  assert.ok(isSiError(err, 'ERR_PEER_PROTOCOL'))
  assert.match(err.message, /more than 64 requests queued/)
})

test('PEX: the peers met since the last message go out once a minute, the ones heard are passed on once', t => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'] })
  const sent: Buffer[] = []
  const pex = new PexExchange(payload => sent.push(payload))
  pex.addPeer({ host: '10.0.0.2', port: 6881 })
  pex.addPeer({ host: '10.0.0.3', port: 6882 })
  pex.dropPeer({ host: '10.0.0.3', port: 6882 }) // met and lost before the message: not news
  pex.dropPeer({ host: '10.0.0.9', port: 7000 })
  pex.start()
  t.mock.timers.tick(PEX_INTERVAL_MS - 1)
  assert.equal(sent.length, 0)
  t.mock.timers.tick(1)
  assert.equal(sent.length, 1)
  const message = decodeBencode(sent[0])
  assert.ok(isBencodeDict(message))
  assert.deepEqual(Buffer.from(message.added as Uint8Array), Buffer.from([10, 0, 0, 2, 0x1a, 0xe1]))
  assert.deepEqual(Buffer.from(message['added.f'] as Uint8Array), Buffer.from([0]))
  assert.deepEqual(Buffer.from(message.dropped as Uint8Array), Buffer.from([10, 0, 0, 9, 0x1b, 0x58]))
  t.mock.timers.tick(PEX_INTERVAL_MS)
  assert.equal(sent.length, 1, 'nothing new, nothing sent')
  pex.stop()

  const heard: string[] = []
  pex.on('peer', (a: { host: string; port: number }) => heard.push(`${a.host}:${a.port}`))
  const added = Buffer.from([10, 0, 0, 5, 0x1a, 0xe1, 10, 0, 0, 6, 0x1a, 0xe2])
  pex.receive(encodeBencode({ added, 'added.f': Buffer.alloc(2) }))
  pex.receive(encodeBencode({ added: Buffer.from([10, 0, 0, 7, 0x1a, 0xe1]) })) // too soon after the last: ignored
  t.mock.timers.tick(PEX_INTERVAL_MS)
  pex.receive(encodeBencode({ added }))
  assert.deepEqual(heard, ['10.0.0.5:6881', '10.0.0.6:6882'])
})

test('PEX: a malformed message is a protocol error naming what was wrong', () => {
  const pex = new PexExchange(() => {})
  assert.throws(() => pex.receive(Buffer.from('not bencode')), (err: unknown) => isSiError(err, 'ERR_PEER_PROTOCOL') && /bad PEX message/.test(err.message))
  const later = new PexExchange(() => {})
  assert.throws(() => later.receive(encodeBencode({ added: Buffer.alloc(7) })), /compact added length 7 is not a multiple of 6/)
})

test('blocks trickling in segment by segment are read in batches, control messages at once', async t => {
  const [socket, remote] = await socketPair(t, dialPeer)
  remote.setNoDelay(true)
  const peer = new Peer(socket, { outgoing: true })
  peer.wire.setPieceCount(PIECES)
  // Each read of the socket is fed to the wire once (dialled sockets read into a shared buffer, with no 'data' events).
  let reads = 0
  const feed = peer.wire.feed.bind(peer.wire)
  peer.wire.feed = (chunk, transient) => { reads++; feed(chunk, transient) }
  const sender = new PeerWire(remote)
  sender.setPieceCount(PIECES)
  const handshakes = once(peer.wire, 'handshake')
  sender.handshake(INFO_HASH, ID_B)
  peer.wire.handshake(INFO_HASH, ID_A)
  await handshakes
  sender.unchoke()
  await once(peer.wire, 'unchoke')

  // With nothing requested, each message is read as it comes.
  reads = 0
  const haves: number[] = []
  peer.wire.on('have', (i: number) => haves.push(i))
  for (let i = 0; i < 10; i++) { sender.have(i); await sleep(READ_HOLD_MS / 2 + 1) }
  await sleep(READ_HOLD_MS * 2)
  assert.deepEqual(haves, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  assert.ok(reads >= 8, `${reads} reads for 10 spaced messages: control messages were held`)

  // Four blocks requested, sent 1 KiB at a time, one write a millisecond.
  const BLOCK = 16384
  const blocks: Array<Buffer | undefined> = []
  for (let i = 0; i < 4; i++) { peer.outstanding++; peer.wire.request(i, 0, BLOCK, b => { peer.outstanding--; blocks.push(b === undefined ? undefined : Buffer.from(b)) }) }
  const message = Buffer.concat([0, 1, 2, 3].map(i => Buffer.concat([encodeMessageHead(MESSAGE.piece, [i, 0], BLOCK), Buffer.alloc(BLOCK, i + 1)])))
  reads = 0
  const writes = Math.ceil(message.length / 1024)
  for (let at = 0; at < message.length; at += 1024) { remote.write(message.subarray(at, at + 1024)); await sleep(1) }
  while (blocks.length < 4) await sleep(READ_HOLD_MS)
  assert.deepEqual(blocks.map(b => b?.equals(Buffer.alloc(BLOCK, (b?.[0] ?? 0))) && b?.[0]), [1, 2, 3, 4])
  assert.ok(reads < writes / 3, `${reads} reads for ${writes} segments: reads were not batched`)
})
