// An image removed while agents fetch it, with a default `si-server serve` and real
// agents: `si-server image rm` (another process) refuses while the server records the
// version in use, --force removes it anyway, and the fetching agent fails at once with
// ERR_IMAGE_REMOVED instead of stalling until --stall-seconds; an agent asking for the
// removed version afterwards is told it was removed (410), not that it never existed.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readInUse, fetchersOf } from '../src/server/in-use.ts'
import { makeTree } from './helpers/trees.ts'
import { waitFor } from './helpers/interop.ts'
import { Background, jsonEvents, requireBuild, run, startServer, SI_AGENT, SI_SERVER, type ImageServerHandle } from './helpers/processes.ts'

const IMAGE_MB = 16
/** The seeder's cap: the download lasts about IMAGE_MB seconds, long enough to remove the image under it. */
const UPLOAD_LIMIT = '1MB'
/** Far longer than the test waits: an agent that stalls instead of stopping fails the test. */
const STALL_SECONDS = 120
/** After `rm --force`, the fetching agent has stopped within this. */
const STOP_WITHIN_MS = 15_000

let dir: string
let repo: string
let server: ImageServerHandle

before(async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-attack-removal-'))
  repo = join(dir, 'repo')
  await makeTree(join(dir, 'source'), IMAGE_MB)
  const added = await run(SI_SERVER, ['image', 'add', 'golden', '--from', join(dir, 'source'), '--repo', repo])
  assert.equal(added.code, 0, added.stderr)
  server = await startServer(repo, ['--upload-limit', UPLOAD_LIMIT])
})

after(async () => {
  await server?.process.stop()
  await rm(dir, { recursive: true, force: true })
})

test('image rm refuses a version agents are fetching; --force removes it and the agent stops at once with ERR_IMAGE_REMOVED', async () => {
  const agent = new Background(SI_AGENT, ['deploy', '--server', server.url, '--image', 'golden', '--target', join(dir, 'target'), '--node', 'fetcher',
    '--json', '--transport', 'bt', '--seed-wait', 'none', '--stall-seconds', String(STALL_SECONDS), '--no-report'])
  try {
    await agent.waitForOutput(/"type":"progress"/, 30_000)
    await waitFor('the server records golden@1 in use', 15_000, async () => fetchersOf(await readInUse(repo), 'golden', 1).peers.length > 0 || undefined)

    const refused = await run(SI_SERVER, ['image', 'rm', 'golden', '--repo', repo])
    assert.notEqual(refused.code, 0, 'rm of a version in use succeeded')
    assert.match(refused.stderr, /ERR_IMAGE_IN_USE|golden@1 is being fetched by 1 node/)
    assert.match(refused.stderr, /--force/)
    const listed = await run(SI_SERVER, ['image', 'list', '--repo', repo])
    assert.match(listed.stdout, /golden/, 'the refused rm removed nothing')
    assert.equal(agent.child.exitCode, null, 'the agent goes on')

    const removedAt = Date.now()
    const forced = await run(SI_SERVER, ['image', 'rm', 'golden', '--force', '--repo', repo])
    assert.equal(forced.code, 0, forced.stderr)
    assert.match(forced.stderr, /warning: golden@1 is being fetched by 1 node.*--force/)
    await waitFor('the agent stops', STOP_WITHIN_MS, () => agent.child.exitCode ?? undefined)
    const seconds = (Date.now() - removedAt) / 1000
    const failure = jsonEvents(agent.stdout).find(e => e.type === 'error')
    process.stderr.write(`# image removed in use: the fetching agent stopped ${seconds.toFixed(1)} s after rm --force with ${String(failure?.code)}: ${String(failure?.message)}\n`)
    assert.notEqual(agent.child.exitCode, 0)
    assert.equal(failure?.code, 'ERR_IMAGE_REMOVED', agent.stdout.slice(-1000))
    assert.match(String(failure?.message), /removed/)
  } finally {
    await agent.stop()
  }

  // Asked for afterwards, the version is gone, not unknown: the agent says so.
  const late = await run(SI_AGENT, ['deploy', '--server', server.url, '--image', 'golden@1', '--target', join(dir, 'late'), '--node', 'late',
    '--json', '--transport', 'bt', '--seed-wait', 'none', '--no-report'], { timeoutMs: 30_000 })
  const lateFailure = jsonEvents(late.stdout).find(e => e.type === 'error')
  assert.equal(lateFailure?.code, 'ERR_IMAGE_REMOVED', late.stdout + late.stderr)
})
