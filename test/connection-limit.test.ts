// The connection limit with real swarms on loopback: a full node refuses newcomers, the
// refused dialler backs off instead of redialling at every rechoke, the image server's
// seeder never takes a node's slot, and a node keeps part of its limit for peers that
// dial it. The nodes hold nothing yet, so connections stay up (two seeds would part at
// once) and only the limit decides who is connected.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createTorrent, parseTorrent, type Metainfo } from '../src/torrent/metainfo.ts'
import { PeerListener } from '../src/swarm/peer-listener.ts'
import { PieceStore } from '../src/swarm/piece-store.ts'
import { Swarm, SERVER_PEER_ID_PREFIX } from '../src/swarm/swarm.ts'
import { DEFAULT_SWARM_CONFIG } from '../src/swarm/config.ts'
import { DialBackoff } from '../src/swarm/dial-backoff.ts'
import { waitFor } from './helpers/interop.ts'

const PAYLOAD_BYTES = 256 * 1024
const WAIT_MS = 10_000
/** Rechokes (which dial) and dial backoffs quicker than the defaults, so that each test waits less for them. */
const CHOKE_INTERVAL_MS = 500
const FIRST_RETRY_MS = 2_000
const MAX_RETRY_MS = 8_000
const { dialShare: DIAL_SHARE } = DEFAULT_SWARM_CONFIG
const CONFIG = { chokeIntervalMs: CHOKE_INTERVAL_MS, dialFirstRetryMs: FIRST_RETRY_MS, dialMaxRetryMs: MAX_RETRY_MS }

let dir: string
let payload: string
let meta: Metainfo

interface Node {
  swarm: Swarm
  listener: PeerListener
  store: PieceStore
  /** incoming connections that reached the swarm (answered or refused) */
  incoming: number
}

const nodes: Node[] = []

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'si-limit-'))
  payload = join(dir, 'payload')
  await writeFile(payload, randomBytes(PAYLOAD_BYTES))
  meta = parseTorrent(await createTorrent({ file: payload, name: 'payload', pieceLength: 16 * 1024 }))
})

after(async () => {
  for (const n of nodes) await stopNode(n)
  await rm(dir, { recursive: true, force: true })
})

async function startNode (name: string, opts: { maxConnections?: number; idPrefix?: string } = {}): Promise<Node> {
  const listener = new PeerListener()
  await listener.start('127.0.0.1', 0)
  const store = await PieceStore.createStaging(join(dir, `${name}.staging`), meta)
  const peerId = Buffer.from(`${opts.idPrefix ?? '-SI0000-'}${name}`.padEnd(20, '0').slice(0, 20))
  const swarm = new Swarm({ infoHash: meta.infoHash, peerId, store, listener, announceUrls: [], config: { ...CONFIG, maxConnections: opts.maxConnections } })
  const node: Node = { swarm, listener, store, incoming: 0 }
  const adopt = swarm.adoptIncoming.bind(swarm)
  swarm.adoptIncoming = peer => { node.incoming++; adopt(peer) }
  swarm.start()
  nodes.push(node)
  return node
}

async function stopNode (n: Node): Promise<void> {
  await n.swarm.stop()
  await n.listener.stop()
  await n.store.close()
}

function address (n: Node): { host: string; port: number } {
  return { host: '127.0.0.1', port: n.listener.port }
}

test('dial backoff: each refusal doubles the wait up to its cap, and a handshake clears it', () => {
  const backoff = new DialBackoff({ dialFirstRetryMs: FIRST_RETRY_MS, dialMaxRetryMs: MAX_RETRY_MS })
  const t0 = 1_000_000
  assert.equal(backoff.mayDial('a', t0), true)
  backoff.refused('a', t0)
  assert.equal(backoff.mayDial('a', t0 + FIRST_RETRY_MS - 1), false)
  assert.equal(backoff.mayDial('a', t0 + FIRST_RETRY_MS), true)
  backoff.refused('a', t0)
  assert.equal(backoff.mayDial('a', t0 + 2 * FIRST_RETRY_MS - 1), false)
  for (let i = 0; i < 10; i++) backoff.refused('a', t0)
  assert.equal(backoff.mayDial('a', t0 + MAX_RETRY_MS - 1), false)
  assert.equal(backoff.mayDial('a', t0 + MAX_RETRY_MS), true)
  assert.equal(backoff.mayDial('b', t0), true, 'other peers are not affected')
  backoff.succeeded('a')
  assert.equal(backoff.mayDial('a', t0), true)
})

test('a node at its connection limit refuses a newcomer, which waits before dialling again and gets in once a slot is free', async () => {
  const full = await startNode('full', { maxConnections: 1 })
  const first = await startNode('first')
  const late = await startNode('late')
  first.swarm.addPeerAddress(address(full))
  await waitFor("the first node holds full's only slot", WAIT_MS, () => (full.swarm.stats().peers === 1) || undefined)

  late.swarm.addPeerAddress(address(full))
  await waitFor('the newcomer was refused', WAIT_MS, () => (full.incoming === 2) || undefined)
  // Several rechokes pass within the first backoff; without it each would dial again.
  await sleep(Math.min(FIRST_RETRY_MS - 1_000, 3 * CHOKE_INTERVAL_MS))
  assert.equal(full.incoming, 2, 'the refused node waited instead of dialling at every rechoke')
  assert.equal(late.swarm.stats().peers, 0)
  assert.equal(full.swarm.stats().peers, 1)

  await stopNode(first)
  nodes.splice(nodes.indexOf(first), 1)
  await waitFor('the newcomer got the freed slot', FIRST_RETRY_MS + 5_000, () => (late.swarm.stats().peers === 1 && full.swarm.stats().peers === 1) || undefined)
  assert.equal(full.incoming, 3, 'one more dial after the backoff was enough')
})

test("the image server's seeder does not take a node's only slot: the node still connects to another node", async () => {
  const server = await startNode('server', { idPrefix: `${SERVER_PEER_ID_PREFIX}0000-` })
  const other = await startNode('other')
  const node = await startNode('node', { maxConnections: 1 })
  node.swarm.addPeerAddress(address(server))
  await waitFor('the node is connected to the server', WAIT_MS, () => (node.swarm.stats().peers === 1) || undefined)
  node.swarm.addPeerAddress(address(other))
  await waitFor('the node is connected to the other node too', WAIT_MS, () => (node.swarm.stats().peers === 2) || undefined)
  // and the limit still holds for nodes: a third node is refused
  const third = await startNode('third')
  third.swarm.addPeerAddress(address(node))
  await waitFor('the third node was refused', WAIT_MS, () => (node.incoming === 1) || undefined)
  await sleep(200)
  assert.equal(node.swarm.stats().peers, 2)
  assert.equal(third.swarm.stats().peers, 0)
})

test('a node dials only its share of the limit and keeps the rest for peers that dial it', async () => {
  const node = await startNode('dialler', { maxConnections: 4 })
  const others = await Promise.all(['o1', 'o2', 'o3', 'o4'].map(name => startNode(name)))
  for (const o of others) node.swarm.addPeerAddress(address(o))
  await waitFor('the node has dialled its share', WAIT_MS, () => (node.swarm.stats().peers === 4 * DIAL_SHARE) || undefined)
  // Rechokes pass: a node that dialled up to the whole limit would have taken the other slots by now.
  await sleep(2 * CHOKE_INTERVAL_MS + 500)
  assert.equal(node.swarm.stats().peers, 4 * DIAL_SHARE)
  const callers = await Promise.all(['c1', 'c2', 'c3'].map(name => startNode(name)))
  for (const c of callers) c.swarm.addPeerAddress(address(node))
  await waitFor('the kept slots were taken by peers that dialled in', WAIT_MS, () => (node.swarm.stats().peers === 4 && node.incoming === 3) || undefined)
  await sleep(200)
  assert.equal(node.swarm.stats().peers, 4, 'the third caller was refused')
})
