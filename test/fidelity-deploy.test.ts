// End to end on loopback with the real executables: si-server packs the fidelity fixture
// tree (every attribute class, the 9 GiB sparse file included) as a zstd image and
// serves it; two si-agent processes deploy it through the swarm; si-server image verify
// and si-agent verify (from the node's side) find no difference in either target.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildFixtureTree, hasTool } from './fidelity-fixtures.ts'
import { requireBuild, run, startServer, SI_AGENT, SI_SERVER, type ImageServerHandle } from './helpers/processes.ts'

const IS_ROOT = process.getuid?.() === 0
const MISSING = ['setfattr', 'setfacl', 'perl'].filter(t => !hasTool(t))
const SKIP = (!IS_ROOT && 'needs root') || (MISSING.length > 0 && `missing tools: ${MISSING.join(', ')}`)
const NODES = 2
const AGENT_TIMEOUT_MS = 120_000

let server: ImageServerHandle | undefined
let dir: string | undefined
after(async () => {
  await server?.process.stop()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

test('si-agent deploys the fidelity tree through the swarm; image verify finds no difference', { skip: SKIP, timeout: 300_000 }, async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-fidelity-deploy-'))
  const source = join(dir, 'source')
  const repo = join(dir, 'repo')
  await mkdir(source)
  await buildFixtureTree(source, { huge: true })
  const added = await run(SI_SERVER, ['image', 'add', 'fidelity', '--from', source, '--repo', repo, '--compression', 'zstd'])
  assert.equal(added.code, 0, added.stderr)
  server = await startServer(repo, ['--announce-interval', '2'])
  const targets = await Promise.all(Array.from({ length: NODES }, async (_, i) => {
    const target = join(dir!, 'targets', `node${i + 1}`)
    const r = await run(SI_AGENT, ['deploy', '--server', server!.url, '--image', 'fidelity', '--target', target,
      '--node', `node${i + 1}`, '--json', '--seed-wait', 'none'], { timeoutMs: AGENT_TIMEOUT_MS })
    assert.equal(r.code, 0, `node${i + 1}: ${r.stdout.slice(-2000)} ${r.stderr.slice(-2000)}`)
    return target
  }))
  for (const target of targets) {
    const v = await run(SI_SERVER, ['image', 'verify', 'fidelity', '--against', target, '--repo', repo])
    assert.equal(v.code, 0, `${target}: ${v.stdout.slice(0, 3000)} ${v.stderr}`)
    assert.match(v.stderr, /no difference/)
    // The same check from the node's side, streaming the image from the web seed.
    const a = await run(SI_AGENT, ['verify', '--server', server.url, '--image', 'fidelity', '--target', target])
    assert.equal(a.code, 0, `${target}: ${a.stdout.slice(0, 3000)} ${a.stderr}`)
    assert.match(a.stderr, /no difference/)
  }
})
