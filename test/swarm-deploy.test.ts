// One server and several agents on loopback, all real processes: the image reaches every
// target intact, and the nodes really serve each other.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from 'node:net'
import { once } from 'node:events'
import { compareTrees } from '../src/image/verify.ts'
import { parseTorrent } from '../src/torrent/metainfo.ts'
import { PeerListener } from '../src/swarm/peer-listener.ts'
import { PieceStore } from '../src/swarm/piece-store.ts'
import { Swarm } from '../src/swarm/swarm.ts'
import { encodeHandshake } from '../src/swarm/wire-reader.ts'
import { makeTree } from './helpers/trees.ts'
import { requireBuild, run, startServer, jsonEvents, SI_AGENT, SI_SERVER, type ImageServerHandle } from './helpers/processes.ts'

const NODES = 8
const IMAGE_MB = 24
// Capped so that the server alone would need NODES x image / rate = 32 s: the swarm must do better.
const SERVER_UPLOAD_LIMIT = '6MB'
const AGENT_TIMEOUT_MS = 120_000

let dir: string
let source: string
let repo: string
let server: ImageServerHandle | undefined

before(async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-deploy-'))
  source = join(dir, 'source')
  repo = join(dir, 'repo')
  await makeTree(source, IMAGE_MB)
  const added = await run(SI_SERVER, ['image', 'add', 'golden', '--from', source, '--repo', repo, '--compression', 'none'])
  assert.equal(added.code, 0, added.stderr)
  assert.equal(added.stdout.trim(), 'golden@1')
})

after(async () => {
  await server?.process.stop()
  await rm(dir, { recursive: true, force: true })
})

test(`${NODES} agents deploy one image through the swarm: every target equals the source, and peers served each other`, async () => {
  server = await startServer(repo, ['--upload-limit', SERVER_UPLOAD_LIMIT, '--announce-interval', '2'])
  const started = Date.now()
  const results = await Promise.all(Array.from({ length: NODES }, async (_, i) => {
    const node = `node${String(i + 1).padStart(2, '0')}`
    const target = join(dir, 'targets', node)
    const r = await run(SI_AGENT, ['deploy', '--server', server!.url, '--image', 'golden', '--target', target,
      '--node', node, '--json', '--peer-host', '127.0.0.1', '--seed-wait', 'swarm', '--seed-max', '30', '--poll', '1'], { timeoutMs: AGENT_TIMEOUT_MS })
    return { node, target, ...r }
  }))
  const seconds = (Date.now() - started) / 1000
  const status = await server.status()
  const imageSize = (await readFile(join(repo, 'images/golden/1/image.tar'))).length

  let peerBytes = 0
  for (const r of results) {
    assert.equal(r.code, 0, `${r.node} failed: ${r.stdout.slice(-2000)} ${r.stderr.slice(-2000)}`)
    const done = jsonEvents(r.stdout).find(e => e.type === 'done')
    assert.ok(done, `${r.node} printed no done event`)
    assert.equal(done.verifiedBytes, imageSize)
    peerBytes += (done.downloaded as number) - (done.downloadedFromServer as number)
    assert.deepEqual(await compareTrees(source, r.target), [], `${r.node}'s target differs from the source`)
  }
  const serverBytes = status.serverBytesSent
  // A client-server transport would send NODES x image; the swarm must stay well below.
  assert.ok(serverBytes < 3 * imageSize, `server sent ${serverBytes} bytes for a ${imageSize}-byte image to ${NODES} nodes`)
  assert.ok(peerBytes > 2 * imageSize, `nodes exchanged only ${peerBytes} bytes among themselves`)
  const fleet = (await (await fetch(`${server.url}/api/nodes`)).json() as { nodes: Array<{ node: string; phase: string; bytesFromPeers?: number }> }).nodes
  assert.equal(fleet.filter(n => n.phase === 'done').length, NODES, 'every node reported done to the server')
  assert.ok(fleet.reduce((sum, n) => sum + (n.bytesFromPeers ?? 0), 0) > 2 * imageSize, 'the reports say how much came from peers')
  process.stderr.write(`# ${NODES} nodes, ${imageSize} bytes: ${seconds.toFixed(1)} s, server sent ${(serverBytes / imageSize).toFixed(2)} x image, peers exchanged ${(peerBytes / imageSize).toFixed(2)} x image\n`)
})

test('a peer sending corrupt data is dropped and counted, its pieces come from elsewhere, and the target is intact', async () => {
  server ??= await startServer(repo, ['--upload-limit', SERVER_UPLOAD_LIMIT, '--announce-interval', '2'])
  // A fast liar: the same image with one byte flipped in every piece, served without a cap.
  const torrent = Buffer.from(await (await fetch(`${server.url}/images/golden/1/image.torrent?webseed=0`)).arrayBuffer())
  const meta = parseTorrent(torrent)
  const corrupt = Buffer.from(await readFile(join(repo, 'images/golden/1/image.tar')))
  for (let off = 100; off < corrupt.length; off += meta.pieceLength) corrupt[off] ^= 0xff
  const corruptPath = join(dir, 'corrupt.tar')
  await writeFile(corruptPath, corrupt)
  const listener = new PeerListener()
  await listener.start('127.0.0.1', 0)
  const store = await PieceStore.openComplete(corruptPath, meta)
  const liar = new Swarm({ infoHash: meta.infoHash, peerId: Buffer.from('-XX0000-liarliarliar'), store, listener, announceUrls: [] })
  liar.start()
  try {
    const target = join(dir, 'targets', 'victim')
    const r = await run(SI_AGENT, ['deploy', '--server', server.url, '--image', 'golden', '--target', target, '--node', 'victim',
      '--json', '--seed-wait', 'none', '--peer', `127.0.0.1:${listener.port}`], { timeoutMs: AGENT_TIMEOUT_MS })
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-2000))
    const events = jsonEvents(r.stdout)
    const done = events.find(e => e.type === 'done')
    assert.ok(done)
    assert.ok((done.hashFailures as number) >= 1, 'the corrupt piece was detected')
    const warnings = events.filter(e => e.type === 'warning').map(e => String(e.message))
    assert.ok(warnings.some(m => m.startsWith(`dropped peer 127.0.0.1:${listener.port}: sent corrupt data for piece `)), `the liar was named: ${warnings.join('; ')}`)
    assert.ok(!warnings.some(m => m.includes(`:${server!.peerPort}:`)), 'the honest server was not blamed')
    assert.deepEqual(await compareTrees(source, target), [])
  } finally {
    await liar.stop()
    await listener.stop()
    await store.close()
  }
})

test('a peer that breaks the protocol is dropped with a warning naming it and what it sent, and the install goes on', async () => {
  server ??= await startServer(repo, ['--upload-limit', SERVER_UPLOAD_LIMIT, '--announce-interval', '2'])
  const torrent = Buffer.from(await (await fetch(`${server.url}/images/golden/1/image.torrent?webseed=0`)).arrayBuffer())
  const meta = parseTorrent(torrent)
  // Answers the agent's handshake properly, then sends have-all, which needs the fast extension nobody negotiated.
  const rogue = createServer(socket => {
    socket.on('error', () => {})
    socket.once('data', () => socket.write(Buffer.concat([encodeHandshake(meta.infoHash, Buffer.from('-XX0000-roguerogue00')), Buffer.from([0, 0, 0, 1, 14])])))
  })
  rogue.listen(0, '127.0.0.1')
  await once(rogue, 'listening')
  const port = (rogue.address() as { port: number }).port
  try {
    const target = join(dir, 'targets', 'rogue-victim')
    const r = await run(SI_AGENT, ['deploy', '--server', server.url, '--image', 'golden', '--target', target, '--node', 'rogue-victim',
      '--json', '--seed-wait', 'none', '--peer', `127.0.0.1:${port}`], { timeoutMs: AGENT_TIMEOUT_MS })
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-2000))
    const warnings = jsonEvents(r.stdout).filter(e => e.type === 'warning').map(e => String(e.message))
    assert.ok(warnings.some(m => m.startsWith(`dropped peer 127.0.0.1:${port}: peer sent fast-extension message 14`)), `the rogue peer was named: ${warnings.join('; ')}`)
    assert.deepEqual(await compareTrees(source, target), [])
  } finally {
    rogue.close()
  }
})
