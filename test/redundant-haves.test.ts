// Which peers a node tells of a newly verified piece, seen from two test-driven peers that
// claim the same half of the pieces: one with our agents' peer id, one with another
// client's. The node downloads everything from a seed over loopback; the agent peer must
// hear only of the pieces it lacks, the other client of every piece.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTorrent, parseTorrent } from '../src/torrent/metainfo.ts'
import { PeerListener } from '../src/swarm/peer-listener.ts'
import { PieceStore } from '../src/swarm/piece-store.ts'
import { PeerWire } from '../src/swarm/wire.ts'
import { Swarm, AGENT_PEER_ID_PREFIX } from '../src/swarm/swarm.ts'
import { waitFor } from './helpers/interop.ts'

const PIECE_BYTES = 16 * 1024
const PIECES = 16
const CLAIMED = PIECES / 2
const WAIT_MS = 10_000

const cleanups: Array<() => Promise<void>> = []
after(async () => { for (const c of cleanups.reverse()) await c() })

function peerId (prefix: string, name: string): Buffer {
  return Buffer.from(`${prefix}0100-${name}`.padEnd(20, '0').slice(0, 20))
}

async function startSwarm (store: PieceStore, meta: { infoHash: Buffer }, id: Buffer): Promise<{ swarm: Swarm; listener: PeerListener }> {
  const listener = new PeerListener()
  await listener.start('127.0.0.1', 0)
  const swarm = new Swarm({ infoHash: meta.infoHash, peerId: id, store, listener, announceUrls: [] })
  swarm.start()
  cleanups.push(async () => { await swarm.stop(); await listener.stop(); await store.close() })
  return { swarm, listener }
}

/**
 * A peer driven by the test: claims pieces 0..CLAIMED-1, never unchokes, records the haves
 * it hears. Resolves once the node has taken in the claim (it says it is interested).
 */
async function watcher (port: number, infoHash: Buffer, id: Buffer): Promise<number[]> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const wire = new PeerWire(socket)
  wire.setPieceCount(PIECES)
  socket.on('data', (chunk: Buffer) => wire.feed(chunk))
  cleanups.push(async () => { wire.close(); socket.destroy() })
  const heard: number[] = []
  wire.on('have', (index: number) => heard.push(index))
  const answered = once(wire, 'handshake')
  wire.handshake(infoHash, id)
  await answered
  const bits = new Uint8Array(PIECES / 8)
  for (let i = 0; i < CLAIMED; i++) bits[i >> 3] |= 0x80 >> (i & 7)
  const interested = once(wire, 'interested')
  wire.bitfield(bits)
  await interested
  return heard
}

test('a verified piece is announced to an agent only if it lacks it, and to any other client always', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'si-haves-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  const payload = join(dir, 'payload')
  await writeFile(payload, randomBytes(PIECES * PIECE_BYTES))
  const meta = parseTorrent(await createTorrent({ file: payload, name: 'payload', pieceLength: PIECE_BYTES }))

  const seed = await startSwarm(await PieceStore.openComplete(payload, meta), meta, peerId('-TS', 'seed'))
  const node = await startSwarm(await PieceStore.createStaging(join(dir, 'node.staging'), meta), meta, peerId(AGENT_PEER_ID_PREFIX, 'node'))
  const agentHeard = await watcher(node.listener.port, meta.infoHash, peerId(AGENT_PEER_ID_PREFIX, 'watch'))
  const otherHeard = await watcher(node.listener.port, meta.infoHash, peerId('-TR', 'watch'))

  node.swarm.addPeerAddress({ host: '127.0.0.1', port: seed.listener.port })
  await waitFor('the node downloaded every piece and announced it', WAIT_MS, () => (node.swarm.isComplete && otherHeard.length === PIECES) || undefined)

  const lacked = Array.from({ length: PIECES - CLAIMED }, (_, i) => CLAIMED + i)
  assert.deepEqual([...otherHeard].sort((a, b) => a - b), Array.from({ length: PIECES }, (_, i) => i), 'another client hears of every piece')
  await waitFor('the agent heard of the pieces it lacks', WAIT_MS, () => (agentHeard.length >= lacked.length) || undefined)
  assert.deepEqual([...agentHeard].sort((a, b) => a - b), lacked, 'an agent hears only of the pieces it lacks')
})
