// Overrides in a node's plan, as the server hands them out: those the plan names, then
// one per group the node is in (groups.conf order), then the node's own, each pinned to
// a version; the routes that serve them under /overrides/ (torrent with this server as
// tracker and web seed, payload), apart from the images.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PlanStore, answerPlanRequest } from '../src/server/plans.ts'
import { overrideRepository } from '../src/image/overrides.ts'
import { ImageServer } from '../src/server/image-server.ts'
import { parseTorrent } from '../src/torrent/metainfo.ts'

const PLAN = { image: 'base', disks: [{ partitions: [{ size: 'rest', fs: 'ext4', mount: '/' }] }] }

async function tree (dir: string, files: Record<string, string>): Promise<string> {
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true })
    await writeFile(join(dir, rel), content)
  }
  return dir
}

async function setup (t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'si-overrides-plan-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const overrides = overrideRepository(join(dir, 'repo'))
  for (const name of ['site', 'rack', 'gpu', 'node1', 'elsewhere']) await overrides.add(name, { from: await tree(join(dir, 'src', name), { [`etc/${name}`]: `${name}\n` }) })
  await overrides.add('site', { from: await tree(join(dir, 'src', 'site2'), { 'etc/site': 'v2\n' }) })
  await mkdir(join(dir, 'plans'), { recursive: true })
  await writeFile(join(dir, 'plans/groups.conf'), 'rack node*\nelsewhere other*\ngpu node1 node2\n')
  await mkdir(join(dir, 'plans/groups'), { recursive: true })
  await writeFile(join(dir, 'plans/groups/rack.json'), JSON.stringify({ ...PLAN, overrides: ['site'] }))
  return dir
}

test('a node\'s overrides: the plan\'s, then its groups in groups.conf order, then its own, pinned to versions', async t => {
  const dir = await setup(t)
  const answer = await answerPlanRequest(new PlanStore(join(dir, 'plans')), new URLSearchParams({ node: 'node1' }), overrideRepository(join(dir, 'repo')))
  assert.equal(answer.status, 200, JSON.stringify(answer.body))
  assert.deepEqual((answer.body.plan as { overrides: string[] }).overrides, ['site@2', 'rack@1', 'gpu@1', 'node1@1'])
  const other = await answerPlanRequest(new PlanStore(join(dir, 'plans')), new URLSearchParams({ node: 'node7' }), overrideRepository(join(dir, 'repo')))
  assert.deepEqual((other.body.plan as { overrides: string[] }).overrides, ['site@2', 'rack@1'])
})

test('an override the plan names that does not exist fails the plan, naming it and the file', async t => {
  const dir = await setup(t)
  await writeFile(join(dir, 'plans/groups/rack.json'), JSON.stringify({ ...PLAN, overrides: ['nosuch'] }))
  const answer = await answerPlanRequest(new PlanStore(join(dir, 'plans')), new URLSearchParams({ node: 'node1' }), overrideRepository(join(dir, 'repo')))
  assert.equal(answer.status, 500)
  assert.match(String(answer.body.error), /ERR_PLAN: plan .*groups\/rack\.json: override "nosuch" not found/)
})

test('the server serves overrides under /overrides/ (torrent naming its payload there), not under /images/', async t => {
  const dir = await setup(t)
  const server = new ImageServer({ repoDir: join(dir, 'repo'), plansDir: join(dir, 'plans'), host: '127.0.0.1', port: 0, peerPort: 0, seed: false })
  await server.start()
  t.after(async () => { await server.stop() })
  const base = `http://127.0.0.1:${server.httpPort}`
  const torrent = await fetch(`${base}/overrides/gpu/image.torrent`)
  assert.equal(torrent.status, 200)
  const meta = parseTorrent(Buffer.from(await torrent.arrayBuffer()))
  const webSeed = meta.urlList[0]
  assert.match(webSeed, /\/overrides\/gpu\/1\/image\.tar/)
  const payload = await fetch(webSeed)
  assert.equal(payload.status, 200)
  assert.equal(Number(payload.headers.get('content-length')), meta.length)
  await payload.arrayBuffer()
  assert.equal((await fetch(`${base}/images/gpu/image.torrent`)).status, 404)
  const listed = await (await fetch(`${base}/api/overrides`)).json() as Array<{ name: string; version: number; torrent: string }>
  assert.ok(listed.some(v => v.name === 'site' && v.version === 2 && v.torrent === '/overrides/site/2/image.torrent'))
})
