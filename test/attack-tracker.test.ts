// An attacker on the LAN against the tracker of a default `si-server serve`, emulated on
// loopback from another address (helpers/attacker.ts): one host cannot fill a swarm and
// lock out the agents that start after it, and the tracker keeps no swarm for a hash the
// server does not serve. Each test prints what the attack cost.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeBencode, isBencodeDict } from '../src/torrent/bencode.ts'
import { parseTorrent, type Metainfo } from '../src/torrent/metainfo.ts'
import { DEFAULT_TRACKER_CONFIG } from '../src/tracker/config.ts'
import { makeTree } from './helpers/trees.ts'
import { scrape } from './helpers/interop.ts'
import { attackerAddress, escapeBytes, floodAnnounces, get } from './helpers/attacker.ts'
import { jsonEvents, requireBuild, run, startServer, SI_AGENT, SI_SERVER, type ImageServerHandle } from './helpers/processes.ts'

const IMAGE_MB = 4
/** The issue's flood: 5 000 peer ids from one address, within the peers' TTL. */
const FLOOD_ANNOUNCES = 5_000
/** A locked-out agent fails within this; one that gets in finishes in a few seconds. */
const AGENT_STALL_SECONDS = 20

let dir: string
let server: ImageServerHandle
let meta: Metainfo

before(async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-attack-tracker-'))
  await makeTree(join(dir, 'source'), IMAGE_MB)
  const added = await run(SI_SERVER, ['image', 'add', 'golden', '--from', join(dir, 'source'), '--repo', join(dir, 'repo')])
  assert.equal(added.code, 0, added.stderr)
  server = await startServer(join(dir, 'repo'))
  meta = parseTorrent(await get(`${server.url}/images/golden/image.torrent`))
})

after(async () => {
  await server?.process.stop()
  await rm(dir, { recursive: true, force: true })
})

test(`${FLOOD_ANNOUNCES} announces with distinct peer ids from one address do not fill the swarm: an agent starting after them gets its image`, async () => {
  const flood = await floodAnnounces(server.url, meta.infoHash, { count: FLOOD_ANNOUNCES, source: attackerAddress(0) })
  const swarm = await scrape(server.url, meta.infoHashHex)
  const started = Date.now()
  const agent = await run(SI_AGENT, ['deploy', '--server', server.url, '--image', 'golden', '--target', join(dir, 'target'), '--node', 'late',
    '--json', '--transport', 'bt', '--seed-wait', 'none', '--stall-seconds', String(AGENT_STALL_SECONDS), '--no-report'], { timeoutMs: 60_000 })
  const seconds = (Date.now() - started) / 1000
  process.stderr.write(`# tracker flood: ${FLOOD_ANNOUNCES} announces from one address in ${flood.seconds.toFixed(1)} s ` +
    `(${flood.accepted} accepted, ${flood.refused} refused); the swarm then listed ${swarm.incomplete} leechers; ` +
    `an agent starting after it: exit ${agent.code} in ${seconds.toFixed(1)} s\n`)
  assert.ok(swarm.incomplete <= DEFAULT_TRACKER_CONFIG.maxPeersPerAddress, `one address holds ${swarm.incomplete} entries`)
  assert.equal(agent.code, 0, `the agent was locked out: ${agent.stderr.slice(-1000)}`)
  assert.ok(jsonEvents(agent.stdout).some(e => e.type === 'done'))
})

test('announces for hashes the server does not serve are refused, and scrape lists served torrents only', async () => {
  const source = attackerAddress(1)
  const foreign = Array.from({ length: 50 }, () => randomBytes(20))
  let refused = 0
  for (const hash of foreign) {
    const query = `info_hash=${escapeBytes(hash)}&peer_id=${escapeBytes(randomBytes(20))}&port=6881&uploaded=0&downloaded=0&left=1`
    const reply = decodeBencode(await get(`${server.url}/announce?${query}`, { localAddress: source }))
    if (isBencodeDict(reply) && reply['failure reason'] !== undefined) {
      assert.match(Buffer.from(reply['failure reason'] as Uint8Array).toString(), /is not served by this tracker/)
      refused++
    }
  }
  const all = decodeBencode(await get(`${server.url}/scrape`))
  const listed = isBencodeDict(all) && isBencodeDict(all.files) ? Object.keys(all.files).map(k => Buffer.from(k, 'latin1').toString('hex')) : []
  const asked = decodeBencode(await get(`${server.url}/scrape?info_hash=${escapeBytes(foreign[0])}`))
  const askedListed = isBencodeDict(asked) && isBencodeDict(asked.files) ? Object.keys(asked.files).length : -1
  process.stderr.write(`# foreign hashes: ${refused} of ${foreign.length} announces refused; a full scrape lists ${listed.length} torrent(s); a scrape of a foreign hash lists ${askedListed}\n`)
  assert.equal(refused, foreign.length)
  assert.deepEqual(listed.filter(h => h !== meta.infoHashHex), [], 'only the served torrent is listed')
  assert.equal(askedListed, 0)
})
