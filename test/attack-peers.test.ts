// An attacker on the LAN against the peer listeners, emulated on loopback from other
// addresses of 127/8 (helpers/attacker.ts): silent connections cannot hold the seeder's
// pending-handshake slots nor a node's peer slots, one address cannot fill a node's slots,
// and a liar that takes a new peer id and port after each ban is shut out by its address.
// Real swarms and listeners, real sockets; each test prints what the attack cost.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTorrent, parseTorrent, type Metainfo } from '../src/torrent/metainfo.ts'
import { PeerListener } from '../src/swarm/peer-listener.ts'
import { PieceStore } from '../src/swarm/piece-store.ts'
import { Swarm } from '../src/swarm/swarm.ts'
import { DEFAULT_SWARM_CONFIG, type SwarmConfig } from '../src/swarm/config.ts'
import { TokenBucket } from '../src/swarm/token-bucket.ts'
import { makeTree } from './helpers/trees.ts'
import { sleep, waitFor } from './helpers/interop.ts'
import { SilentConnections, attackerAddress } from './helpers/attacker.ts'
import { jsonEvents, requireBuild, run, startServer, SI_AGENT, SI_SERVER } from './helpers/processes.ts'

const PIECE_LENGTH = 16 * 1024
const PAYLOAD_BYTES = 1024 * 1024
/** An honest node on its own address (not this machine's 127.0.0.1, which no cap counts). */
const HONEST_HOST = '127.0.0.9'
const LIAR_HOST = attackerAddress(200)
/** A locked-out agent fails within this; one that gets in finishes in a few seconds. */
const AGENT_STALL_SECONDS = 20
const WAIT_MS = 15_000
/** The node under a flood of silent handshaken peers has its image within this (idle ones give way after SwarmConfig.idleEvictAfterMs). */
const IDLE_FLOOD_BOUND_MS = 30_000

let dir: string
let meta: Metainfo
let payload: string
let corrupt: string

interface Node { swarm: Swarm; listener: PeerListener; store: PieceStore }
const nodes: Node[] = []

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'si-attack-peers-'))
  payload = join(dir, 'payload')
  const data = randomBytes(PAYLOAD_BYTES)
  await writeFile(payload, data)
  meta = parseTorrent(await createTorrent({ file: payload, name: 'payload', pieceLength: PIECE_LENGTH }))
  // One flipped byte in every piece: whatever a liar sends fails its check.
  const bad = Buffer.from(data)
  for (let off = 100; off < bad.length; off += PIECE_LENGTH) bad[off] ^= 0xff
  corrupt = join(dir, 'corrupt')
  await writeFile(corrupt, bad)
})

after(async () => {
  for (const n of nodes.splice(0)) await stopNode(n)
  await rm(dir, { recursive: true, force: true })
})

async function startNode (name: string, opts: { host?: string; from?: string; config?: Partial<SwarmConfig>; uploadLimit?: TokenBucket } = {}): Promise<Node> {
  const listener = new PeerListener()
  await listener.start(opts.host ?? '127.0.0.1', 0)
  const store = opts.from !== undefined
    ? await PieceStore.openComplete(opts.from, meta)
    : await PieceStore.createStaging(join(dir, `${name}-${randomBytes(4).toString('hex')}.staging`), meta)
  const peerId = Buffer.concat([Buffer.from('-SI0000-'), randomBytes(12)])
  const swarm = new Swarm({ infoHash: meta.infoHash, peerId, store, listener, announceUrls: [], config: opts.config, uploadLimit: opts.uploadLimit, connectWhenComplete: opts.from !== undefined })
  swarm.start()
  const node = { swarm, listener, store }
  nodes.push(node)
  return node
}

async function stopNode (n: Node): Promise<void> {
  const i = nodes.indexOf(n)
  if (i !== -1) nodes.splice(i, 1)
  await n.swarm.stop()
  await n.listener.stop()
  await n.store.close()
}

/** `count` attacker addresses, each `perAddress` connections: enough addresses that the per-address caps do not stop the flood alone. */
function sources (count: number): string[] {
  return Array.from({ length: count }, (_, i) => attackerAddress(i))
}

test('silent connections renewed as they close cannot hold the seeder\'s pending-handshake slots: a new agent gets its image', async () => {
  requireBuild()
  const work = join(dir, 'server')
  await makeTree(join(work, 'source'), 4)
  const added = await run(SI_SERVER, ['image', 'add', 'golden', '--from', join(work, 'source'), '--repo', join(work, 'repo')])
  assert.equal(added.code, 0, added.stderr)
  const server = await startServer(join(work, 'repo'))
  const { maxPendingHandshakes, maxPendingHandshakesPerAddress } = DEFAULT_SWARM_CONFIG
  const attack = new SilentConnections('127.0.0.1', server.peerPort, {
    sources: sources(Math.ceil(maxPendingHandshakes / maxPendingHandshakesPerAddress)),
    perSource: maxPendingHandshakesPerAddress,
    renew: true
  })
  try {
    attack.start()
    await waitFor('the attack holds every pending slot', WAIT_MS, () => attack.open >= maxPendingHandshakes || undefined)
    const started = Date.now()
    const agent = await run(SI_AGENT, ['deploy', '--server', server.url, '--image', 'golden', '--target', join(work, 'target'), '--node', 'late',
      '--json', '--transport', 'bt', '--seed-wait', 'none', '--stall-seconds', String(AGENT_STALL_SECONDS), '--no-report'], { timeoutMs: 60_000 })
    const seconds = (Date.now() - started) / 1000
    process.stderr.write(`# silent pre-handshake flood: ${attack.open} connections held from ${Math.ceil(maxPendingHandshakes / maxPendingHandshakesPerAddress)} addresses, ` +
      `${attack.opened} opened in all; an agent starting during it: exit ${agent.code} in ${seconds.toFixed(1)} s\n`)
    assert.equal(agent.code, 0, `the agent got nothing from the seeder: ${agent.stderr.slice(-1000)}`)
    assert.ok(jsonEvents(agent.stdout).some(e => e.type === 'done'))
  } finally {
    attack.stop()
    await server.process.stop()
  }
})

test('one address gets at most maxPendingHandshakesPerAddress pending slots and maxConnectionsPerAddress peer slots', async () => {
  const node = await startNode('capped')
  const { maxPendingHandshakesPerAddress, maxConnectionsPerAddress } = DEFAULT_SWARM_CONFIG
  const silent = new SilentConnections('127.0.0.1', node.listener.port, { sources: [attackerAddress(0)], perSource: 20, renew: false })
  // One at a time, so that each is handshaken before the next comes: the peer cap, not the pending cap, decides.
  const handshaken = new SilentConnections('127.0.0.1', node.listener.port, { sources: [attackerAddress(1)], perSource: 20, handshake: meta.infoHash, renew: false, staggerMs: 50 })
  try {
    silent.start()
    handshaken.start()
    await waitFor('the connections over the caps are closed', WAIT_MS, () =>
      (handshaken.opened === 20 && silent.open <= maxPendingHandshakesPerAddress && handshaken.open <= maxConnectionsPerAddress) || undefined)
    process.stderr.write(`# one address, 20 silent and 20 handshaken connections: ${node.listener.pendingCount(attackerAddress(0))} pending kept, ` +
      `${node.swarm.stats().peers} peers kept\n`)
    assert.equal(node.listener.pendingCount(attackerAddress(0)), maxPendingHandshakesPerAddress)
    assert.equal(node.swarm.stats().peers, maxConnectionsPerAddress)
    assert.equal(handshaken.answered, maxConnectionsPerAddress)
  } finally {
    silent.stop()
    handshaken.stop()
    await stopNode(node)
  }
})

// Interested or not: a peer we unchoked that asks for nothing is idle all the same.
for (const interested of [false, true]) {
  test(`silent handshaken connections${interested ? ' that declare interest' : ''} from many addresses cannot fill a node's peer slots: it still reaches an honest peer and gets the image`, async () => {
    const { maxConnections, maxConnectionsPerAddress, idleEvictAfterMs } = DEFAULT_SWARM_CONFIG
    const node = await startNode('victim')
    const honest = await startNode('honest', { host: HONEST_HOST, from: payload })
    const attackers = Math.ceil(maxConnections / maxConnectionsPerAddress) + 1
    const attack = new SilentConnections('127.0.0.1', node.listener.port, {
      sources: sources(attackers), perSource: maxConnectionsPerAddress, handshake: meta.infoHash, interested, renew: true
    })
    try {
      attack.start()
      await waitFor('the attack fills every peer slot', WAIT_MS, () => node.swarm.stats().peers >= maxConnections || undefined)
      const started = Date.now()
      node.swarm.addPeerAddress({ host: HONEST_HOST, port: honest.listener.port })
      await waitFor(`the image, from the honest peer (${idleEvictAfterMs} ms for a silent peer to give way)`, IDLE_FLOOD_BOUND_MS, () => node.swarm.isComplete || undefined)
      const seconds = (Date.now() - started) / 1000
      process.stderr.write(`# silent handshaken flood${interested ? ' (interested)' : ''}: ${attackers * maxConnectionsPerAddress} connections from ${attackers} addresses (${attack.opened} opened in all) ` +
        `against --max-peers ${maxConnections}; the node got the image from an honest peer ${seconds.toFixed(1)} s after learning of it\n`)
    } finally {
      attack.stop()
      await stopNode(node)
      await stopNode(honest)
    }
  })
}

test('a handshaken peer that stays silent is dropped after idleTimeoutMs once the node has pieces to offer', async () => {
  const IDLE_MS = 1_000
  const CLOSE_SEEN_MS = 2_000
  const seed = await startNode('seed', { from: payload, config: { idleTimeoutMs: IDLE_MS, chokeIntervalMs: 250 } })
  const attack = new SilentConnections('127.0.0.1', seed.listener.port, { sources: [attackerAddress(2)], perSource: 1, handshake: meta.infoHash, renew: false })
  try {
    attack.start()
    await waitFor('the silent peer is attached', WAIT_MS, () => seed.swarm.stats().peers === 1 || undefined)
    const attached = Date.now()
    await waitFor('the silent peer is dropped', WAIT_MS, () => seed.swarm.stats().peers === 0 || undefined)
    const ms = Date.now() - attached
    assert.ok(ms >= IDLE_MS - 100, `dropped after ${ms} ms, before its time`)
    // The attacker's side sees the close a moment after the seed has let go of the peer.
    await waitFor('the silent connection is closed on the attacker\'s side', CLOSE_SEEN_MS, () => attack.open === 0 || undefined)
  } finally {
    attack.stop()
    await stopNode(seed)
  }
})

test('a liar taking a new peer id and port after each ban is shut out by its address; the honest peer is never blamed', async () => {
  const { banAddressAfterConvictions } = DEFAULT_SWARM_CONFIG
  const DEADLINE_MS = 60_000
  const node = await startNode('victim')
  // Slow, so that the fast liar gets most requests while it is let in.
  const honest = await startNode('honest', { host: HONEST_HOST, from: payload, uploadLimit: new TokenBucket(128 * 1024) })
  let liar: Node | undefined
  let identities = 0
  /** the current identity was thrown out (it may be gone before the loop below saw it connected) */
  let liarBanned = false
  const bans: string[] = []
  node.swarm.on('peer-banned', key => {
    bans.push(key)
    if (liar !== undefined && key === `${LIAR_HOST}:${liar.listener.port}`) liarBanned = true
  })
  const rotate = async (): Promise<void> => {
    if (liar !== undefined) await stopNode(liar)
    liarBanned = false
    identities++
    liar = await startNode(`liar${identities}`, { host: LIAR_HOST, from: corrupt })
    // As the tracker or PEX would tell of it: a new peer at a new port.
    node.swarm.addPeerAddress({ host: LIAR_HOST, port: liar.listener.port })
  }
  try {
    const started = Date.now()
    await rotate()
    node.swarm.addPeerAddress({ host: HONEST_HOST, port: honest.listener.port })
    // The liar comes back under a new identity as soon as it is thrown out.
    let wasConnected = false
    while (!node.swarm.isComplete) {
      assert.ok(Date.now() - started < DEADLINE_MS, `no image after ${DEADLINE_MS} ms: ${JSON.stringify(node.swarm.stats())}`)
      const connected = (liar?.swarm.stats().peers ?? 0) > 0
      if ((wasConnected || liarBanned) && !connected) {
        await rotate()
        wasConnected = false
      } else {
        wasConnected ||= connected
      }
      await sleep(20)
    }
    const seconds = (Date.now() - started) / 1000
    const stats = node.swarm.stats()
    process.stderr.write(`# liar rotating ids and ports: ${identities} identities, ${stats.hashFailures} hash failures, ` +
      `${(stats.downloaded / 2 ** 20).toFixed(1)} MiB downloaded for a ${(PAYLOAD_BYTES / 2 ** 20).toFixed(1)} MiB payload in ${seconds.toFixed(1)} s; bans: ${bans.join(', ')}\n`)
    assert.ok(bans.includes(LIAR_HOST), `the liar's address was banned: ${bans.join(', ')}`)
    assert.ok(bans.every(b => !b.startsWith(HONEST_HOST)), `an honest peer was blamed: ${bans.join(', ')}`)
    // The identities convicted, and the one refused after them.
    assert.ok(identities <= banAddressAfterConvictions + 1, `${identities} identities of the liar`)
    assert.ok(stats.hashFailures <= 4 * banAddressAfterConvictions, `${stats.hashFailures} hash failures`)
  } finally {
    if (liar !== undefined) await stopNode(liar)
    await stopNode(node)
    await stopNode(honest)
  }
})
