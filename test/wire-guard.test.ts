import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WireGuard } from '../src/swarm/wire-guard.ts'

const HANDSHAKE = Buffer.concat([Buffer.from([19]), Buffer.from('BitTorrent protocol'), Buffer.alloc(48)])

function message (id: number, body: Buffer | number): Buffer {
  const payload = typeof body === 'number' ? Buffer.alloc(body) : body
  const head = Buffer.alloc(5)
  head.writeUInt32BE(payload.length + 1, 0)
  head[4] = id
  return Buffer.concat([head, payload])
}

function feed (guard: WireGuard, chunks: Buffer[]): Promise<{ passed: number; error?: Error }> {
  return new Promise(resolve => {
    let passed = 0
    guard.on('data', (c: Buffer) => { passed += c.length })
    guard.on('error', error => resolve({ passed, error }))
    guard.on('end', () => resolve({ passed }))
    for (const c of chunks) guard.write(c)
    guard.end()
  })
}

test('well-formed traffic passes through unchanged, even split at every byte', async () => {
  const guard = new WireGuard()
  guard.setPieceCount(20)
  const stream = Buffer.concat([HANDSHAKE, message(5, 3), message(4, 4), Buffer.alloc(4), message(7, 8 + 16384), message(20, 30)])
  const bytes = [...stream].map(b => Buffer.from([b]))
  const r = await feed(guard, bytes)
  assert.equal(r.error, undefined)
  assert.equal(r.passed, stream.length)
})

test('a huge announced length is refused before it is buffered', async () => {
  const head = Buffer.alloc(5)
  head.writeUInt32BE(0x80000000, 0)
  head[4] = 7
  const r = await feed(new WireGuard(), [HANDSHAKE, head])
  assert.match(String(r.error?.message), /message 7 of length 2147483648/)
})

test('a short have message is refused (it would be read out of bounds)', async () => {
  const r = await feed(new WireGuard(), [HANDSHAKE, message(4, 1)])
  assert.match(String(r.error?.message), /message 4 of length 2: expected 5/)
})

test('a bitfield of the wrong size for the torrent is refused', async () => {
  const guard = new WireGuard()
  guard.setPieceCount(20)
  const r = await feed(guard, [HANDSHAKE, message(5, 100)])
  assert.match(String(r.error?.message), /expected 4/)
})

test('a connection that does not start with a BitTorrent handshake is refused', async () => {
  const r = await feed(new WireGuard(), [Buffer.from('GET / HTTP/1.1\r\n\r\n')])
  assert.match(String(r.error?.message), /does not speak the BitTorrent protocol/)
})
