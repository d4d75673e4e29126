// Interoperability with standard BitTorrent clients (DESIGN.md, "Protocol notes"): Debian's
// aria2c and transmission-cli must accept our torrents, join our swarms, and our agent
// theirs; a client that only knows BEP 19 must get the image from our web seed.
// Real processes on 127.0.0.1 only: our dist/ executables (a snapshot, see helpers), the
// clients with DHT, LPD, port mapping and IPv6 off. Every wait is bounded; every process
// is stopped and the temporary directory removed in the after-hooks.
//
// Loopback and Transmission: libtransmission 3.00 never dials a peer at 127.0.0.0/8 (it
// treats loopback as a "martian" address and drops it from tracker replies and PEX), so
// here it cannot connect to our seeder. It does accept incoming connections, so in the
// Transmission-downloads direction the peer that serves it is one of our agents, which
// dials the peers the tracker names (the server's seeder only waits for connections).
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { compareTrees, formatDifference } from '../src/image/verify.ts'
import { parseTorrent, type Metainfo } from '../src/torrent/metainfo.ts'
import {
  ProcessGroup, aria2cCommonArgs, aria2cConnections, describeAgent, freePort, getBuffer, hasCommand,
  makeSourceTree, runAgent, scrape, sleep, snapshotExecutables, startServer, transmissionConfig, waitFor,
  type RunningServer
} from './helpers/interop.ts'

const HAVE_ARIA2C = hasCommand('aria2c')
const HAVE_TRANSMISSION = hasCommand('transmission-cli')
const IMAGE = 'interop'
/** Several pieces' worth: enough for pipelining, super-seeding and rechoking to matter. */
const PAYLOAD_BYTES = 6 * 1024 * 1024
const PIECE_LENGTH = 256 * 1024
const TEST_TIMEOUT_MS = 90_000
const KEEP = process.env.SI_INTEROP_KEEP === '1'
const KEEP_HINT = KEEP ? '' : ' (removed at the end; SI_INTEROP_KEEP=1 keeps it)'

let work = ''
let exe: { agent: string; server: string }
let repo = ''
let source = ''
let tarPath = ''
const groups: ProcessGroup[] = []

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'si-interop-'))
  mkdirSync(join(work, 'logs'))
  exe = await snapshotExecutables(join(work, 'bin'))
  source = join(work, 'source')
  makeSourceTree(source, PAYLOAD_BYTES)
  repo = join(work, 'repo')
  const add = spawnSync(exe.server, ['image', 'add', IMAGE, '--from', source, '--repo', repo, '--piece-length', String(PIECE_LENGTH), '--compression', 'none'], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(add.status, 0, `si-server image add failed: ${add.stderr}`)
  assert.equal(add.stdout.trim(), `${IMAGE}@1`)
  tarPath = join(repo, 'images', IMAGE, '1', 'image.tar')
})

after(async () => {
  await Promise.all(groups.map(g => g.stopAll()))
  if (work !== '' && !KEEP) rmSync(work, { recursive: true, force: true })
  if (KEEP) process.stderr.write(`interop: kept ${work}\n`)
})

function newGroup (): ProcessGroup {
  const g = new ProcessGroup(join(work, 'logs'))
  groups.push(g)
  return g
}

function scratch (name: string): string {
  const dir = join(work, name)
  mkdirSync(dir, { recursive: true })
  return dir
}

/** Fetches the image's torrent from the server, checks its trackers, saves it to a file. */
async function fetchTorrent (server: RunningServer, webSeed: boolean, file: string): Promise<Metainfo> {
  const raw = await getBuffer(`${server.base}/images/${IMAGE}/1/image.torrent${webSeed ? '' : '?webseed=0'}`)
  const meta = parseTorrent(raw)
  assert.deepEqual(meta.announce, [`${server.base}/announce`], 'the only tracker is our server')
  assert.deepEqual(meta.urlList, webSeed ? [`${server.base}/images/${IMAGE}/1/image.tar`] : [], webSeed ? 'web seed is the server' : '?webseed=0 leaves the web seed out')
  assert.equal(meta.length, readFileSync(tarPath).length)
  writeFileSync(file, raw)
  return meta
}

function assertSameBytes (actualFile: string, what: string): void {
  const expected = readFileSync(tarPath)
  const actual = readFileSync(actualFile)
  assert.equal(actual.length, expected.length, `${what}: size`)
  assert.ok(actual.equals(expected), `${what}: content differs from the repository's image.tar`)
}

async function assertTargetMatchesSource (target: string): Promise<void> {
  const diffs = await compareTrees(source, target)
  assert.deepEqual(diffs.map(formatDifference), [], 'the target holds exactly the source tree')
}

/** The agent's closing event: it got every byte, all of it from standard-client peers. */
function assertAllFromPeers (run: Awaited<ReturnType<typeof runAgent>>, length: number): void {
  assert.equal(run.code, 0, describeAgent(run))
  assert.ok(run.done !== undefined, `no done event\n${describeAgent(run)}`)
  assert.equal(run.done.verifiedBytes, length)
  assert.ok(Number(run.done.downloaded) >= length, `downloaded ${String(run.done.downloaded)} < ${length}`)
  assert.equal(run.done.downloadedFromServer, 0, 'nothing came from our seeder')
}

describe('aria2c', { skip: HAVE_ARIA2C ? false : 'aria2c is not installed (Debian package aria2)' }, () => {
  describe('downloads from our seeder over BitTorrent only', () => {
    const state = {} as { group: ProcessGroup; server: RunningServer; meta: Metainfo }

    before(async () => {
      state.group = newGroup()
      state.server = await startServer(state.group, exe.server, repo, { name: 'server-seeding', seed: true })
    })
    after(async () => { await state.group.stopAll() })

    test('aria2c gets a byte-identical image.tar, all of it from the seeder, over one connection', { timeout: TEST_TIMEOUT_MS }, async t => {
      const dir = scratch('aria2c-leech')
      const torrent = join(dir, 'nowebseed.torrent')
      state.meta = await fetchTorrent(state.server, false, torrent)
      const before = await state.server.status()
      const logFile = join(work, 'logs', 'aria2c-leech.aria2.log')
      const aria = state.group.start('aria2c-leech', 'aria2c', [
        ...aria2cCommonArgs({ dir: join(dir, 'download'), listenPort: await freePort(), logFile }),
        '--seed-time=0', '--bt-stop-timeout=30', torrent
      ])
      // A healthy seeder keeps aria2c's one connection to the end: stop at the first redial.
      let connections = aria2cConnections(logFile, '127.0.0.1', state.server.peerPort)
      while (aria.running && connections.count <= 1) {
        await Promise.race([aria.exited, sleep(200)])
        connections = aria2cConnections(logFile, '127.0.0.1', state.server.peerPort)
      }
      if (connections.count > 1) {
        await aria.stop()
        assert.fail(`the seeder dropped aria2c, which had to connect ${connections.count} times ` +
          `(${connections.droppedAfterLateBitfield} drops right after aria2c re-sent its bitfield); log: ${logFile}${KEEP_HINT}`)
      }
      assert.equal(await aria.wait(45_000), 0, `aria2c failed:\n${aria.tail()}`)
      assertSameBytes(join(dir, 'download', state.meta.name), 'aria2c download')
      const after = await state.server.status()
      assert.ok(after.seederUploadedBytes - before.seederUploadedBytes >= state.meta.length,
        `seederUploadedBytes grew by ${after.seederUploadedBytes - before.seederUploadedBytes}, expected >= ${state.meta.length}`)
      assert.equal(after.payloadBytesSent - before.payloadBytesSent, 0, 'nothing was sent over HTTP')
    })

    test('once aria2c has left, our agent still gets the whole image from the seeder', { timeout: TEST_TIMEOUT_MS }, async () => {
      // A standard client that left (complete or not) must not leave the seeder believing
      // its pieces are still out there (super-seeding then never reveals them again).
      const target = join(scratch('agent-after-aria2c'), 'target')
      const run = await runAgent(state.group, exe.agent, 'agent-after-aria2c', [
        '--torrent', `${state.server.base}/images/${IMAGE}/1/image.torrent?webseed=0`,
        '--target', target, '--seed-wait', 'none', '--stall-seconds', '15'
      ], 45_000)
      assert.equal(run.code, 0, describeAgent(run))
      assert.ok(run.done !== undefined)
      assert.equal(run.done.verifiedBytes, state.meta.length)
      assert.ok(Number(run.done.downloadedFromServer) > 0, 'the seeder served it')
      await assertTargetMatchesSource(target)
    })
  })

  test('our agent downloads from a swarm seeded by aria2c (server tracks only)', { timeout: TEST_TIMEOUT_MS }, async () => {
    const g = newGroup()
    try {
      const server = await startServer(g, exe.server, repo, { name: 'server-noseed-aria2c', seed: false })
      const dir = scratch('aria2c-seed')
      const torrent = join(dir, 'nowebseed.torrent')
      const meta = await fetchTorrent(server, false, torrent)
      mkdirSync(join(dir, 'data'))
      copyFileSync(tarPath, join(dir, 'data', meta.name))
      const seed = g.start('aria2c-seed', 'aria2c', [
        ...aria2cCommonArgs({ dir: join(dir, 'data'), listenPort: await freePort(), logFile: join(work, 'logs', 'aria2c-seed.aria2.log') }),
        '--check-integrity=true', '--seed-ratio=0.0', '--seed-time=3', torrent
      ])
      await waitFor('aria2c to announce itself as a seed', 30_000, async () => {
        if (!seed.running) throw new Error(`aria2c exited: ${seed.tail()}`)
        return (await scrape(server.base, meta.infoHashHex)).complete >= 1 ? true : undefined
      }, 250)
      const target = join(dir, 'target')
      const run = await runAgent(g, exe.agent, 'agent-from-aria2c', [
        '--torrent', `${server.base}/images/${IMAGE}/1/image.torrent?webseed=0`,
        '--target', target, '--seed-wait', 'none', '--stall-seconds', '30'
      ], 60_000)
      assertAllFromPeers(run, meta.length)
      await assertTargetMatchesSource(target)
      const status = await server.status()
      assert.equal(status.seederUploadedBytes, 0)
      assert.equal(status.payloadBytesSent, 0, 'nothing was fetched over HTTP')
    } finally {
      await g.stopAll()
    }
  })

  test('aria2c gets the image through the BEP 19 web seed when nobody seeds over BitTorrent', { timeout: TEST_TIMEOUT_MS }, async () => {
    const g = newGroup()
    try {
      const server = await startServer(g, exe.server, repo, { name: 'server-noseed-webseed', seed: false })
      const dir = scratch('aria2c-webseed')
      const torrent = join(dir, 'webseed.torrent')
      const meta = await fetchTorrent(server, true, torrent)
      const aria = g.start('aria2c-webseed', 'aria2c', [
        ...aria2cCommonArgs({ dir: join(dir, 'download'), listenPort: await freePort(), logFile: join(work, 'logs', 'aria2c-webseed.aria2.log') }),
        '--seed-time=0', '--bt-stop-timeout=40', torrent
      ])
      assert.equal(await aria.wait(60_000), 0, `aria2c failed:\n${aria.tail()}`)
      assertSameBytes(join(dir, 'download', meta.name), 'aria2c web-seed download')
      const status = await server.status()
      assert.ok(status.payloadBytesSent >= meta.length, `payloadBytesSent ${status.payloadBytesSent} < ${meta.length}`)
      assert.equal(status.seederUploadedBytes, 0)
    } finally {
      await g.stopAll()
    }
  })
})

describe('transmission-cli', { skip: HAVE_TRANSMISSION ? false : 'transmission-cli is not installed (Debian package transmission-cli)' }, () => {
  test('transmission-cli downloads from our swarm (served by an agent: Transmission never dials loopback peers)', { timeout: TEST_TIMEOUT_MS }, async () => {
    const g = newGroup()
    try {
      const server = await startServer(g, exe.server, repo, { name: 'server-seeding-transmission', seed: true })
      const dir = scratch('transmission-leech')
      const torrent = join(dir, 'nowebseed.torrent')
      const meta = await fetchTorrent(server, false, torrent)
      mkdirSync(join(dir, 'download'))
      const tr = g.start('transmission-leech', 'transmission-cli', [
        '-g', transmissionConfig(join(dir, 'config'), 'leech'), '-w', join(dir, 'download'),
        '-p', String(await freePort()), '-et', '-M', '-B', torrent
      ])
      await waitFor('transmission-cli to announce itself as a leecher', 20_000, async () => {
        if (!tr.running) throw new Error(`transmission-cli exited: ${tr.tail()}`)
        return (await scrape(server.base, meta.infoHashHex)).incomplete >= 1 ? true : undefined
      }, 250)
      // The agent downloads from the seeder and, meanwhile and afterwards, uploads to
      // Transmission; it leaves once the tracker reports no leecher.
      const target = join(dir, 'target')
      const agentRun = runAgent(g, exe.agent, 'agent-serving-transmission', [
        '--torrent', `${server.base}/images/${IMAGE}/1/image.torrent?webseed=0`,
        '--target', target, '--seed-wait', 'swarm', '--poll', '1', '--seed-max', '60', '--stall-seconds', '30'
      ], 80_000)
      const trCode = await tr.wait(70_000)
      assert.equal(trCode, 0, `transmission-cli failed:\n${tr.tail()}`)
      assertSameBytes(join(dir, 'download', meta.name), 'transmission-cli download')
      const run = await agentRun
      assert.equal(run.code, 0, describeAgent(run))
      assert.ok(run.done !== undefined)
      assert.ok(Number(run.done.uploaded) >= meta.length, `the agent uploaded ${String(run.done.uploaded)} bytes, expected >= ${meta.length}`)
      await assertTargetMatchesSource(target)
    } finally {
      await g.stopAll()
    }
  })

  test('our agent downloads from a swarm seeded by transmission-cli (server tracks only)', { timeout: TEST_TIMEOUT_MS }, async () => {
    const g = newGroup()
    try {
      const server = await startServer(g, exe.server, repo, { name: 'server-noseed-transmission', seed: false })
      const dir = scratch('transmission-seed')
      const torrent = join(dir, 'nowebseed.torrent')
      const meta = await fetchTorrent(server, false, torrent)
      mkdirSync(join(dir, 'data'))
      copyFileSync(tarPath, join(dir, 'data', meta.name))
      const seed = g.start('transmission-seed', 'transmission-cli', [
        '-g', transmissionConfig(join(dir, 'config'), 'seed'), '-w', join(dir, 'data'),
        '-p', String(await freePort()), '-et', '-M', '-B', torrent
      ])
      await waitFor('transmission-cli to announce itself as a seed', 30_000, async () => {
        if (!seed.running) throw new Error(`transmission-cli exited: ${seed.tail()}`)
        return (await scrape(server.base, meta.infoHashHex)).complete >= 1 ? true : undefined
      }, 250)
      const target = join(dir, 'target')
      const run = await runAgent(g, exe.agent, 'agent-from-transmission', [
        '--torrent', `${server.base}/images/${IMAGE}/1/image.torrent?webseed=0`,
        '--target', target, '--seed-wait', 'none', '--stall-seconds', '40'
      ], 75_000)
      assertAllFromPeers(run, meta.length)
      await assertTargetMatchesSource(target)
      const status = await server.status()
      assert.equal(status.seederUploadedBytes, 0)
      assert.equal(status.payloadBytesSent, 0, 'nothing was fetched over HTTP')
    } finally {
      await g.stopAll()
    }
  })
})
