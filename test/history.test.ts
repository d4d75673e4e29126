// The deployment history: the server records each node's run at its steps in SQLite, and
// `si-server history` (the single executable, node:sqlite inside) lists it, filtered,
// as a table or JSON, with nothing on stderr.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImageServer } from '../src/server/image-server.ts'
import { requireBuild, run, SI_SERVER } from './helpers/processes.ts'
import { postReport } from './helpers/reports.ts'

let dir: string
let repo: string

before(async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-history-'))
  repo = join(dir, 'repo')
  const server = new ImageServer({ repoDir: repo, host: '127.0.0.1', port: 0, peerPort: 0, seed: false })
  await server.start()
  const url = `http://127.0.0.1:${server.httpPort}`
  const post = async (node: string, body: object): Promise<void> => {
    const res = await postReport(url, node, body)
    assert.equal(res.status, 200, await res.text())
  }
  try {
    await post('node01', { phase: 'downloading', step: 'download', run: 'run-a', image: 'compute@2', progress: 0.5 })
    await post('node01', { phase: 'done', step: 'installed', run: 'run-a', image: 'compute@2', progress: 1, bytesFromServer: 1000, bytesFromPeers: 9000 })
    await post('node02', { phase: 'downloading', step: 'download', run: 'run-b', image: 'compute@2' })
    await post('node02', { phase: 'failed', run: 'run-b', image: 'compute@2', error: { code: 'ERR_DISK_TOO_SMALL', message: 'sda: 1 GB', step: 'partition' } })
    await post('node03', { phase: 'done', step: 'installed', run: 'run-c', image: 'storage@1' })
    // A second run of node01: a new row, the first one kept.
    await post('node01', { phase: 'planning', step: 'plan', run: 'run-d' })
  } finally { await server.stop() }
})

after(async () => { await rm(dir, { recursive: true, force: true }) })

test('si-server history lists every run with its outcome, step, error and bytes; filters by image and time', async () => {
  const all = await run(SI_SERVER, ['history', '--repo', repo, '--json'])
  assert.equal(all.code, 0, all.stderr)
  assert.equal(all.stderr, '', 'node:sqlite prints no warning from the executable')
  const rows = all.stdout.trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
  assert.equal(rows.length, 4)
  const a = rows.find(r => r.run === 'run-a')
  assert.deepEqual([a?.outcome, a?.step, a?.bytesFromServer, a?.bytesFromPeers], ['done', 'installed', 1000, 9000])
  assert.ok(typeof a?.endedAt === 'number' && a.endedAt >= (a.startedAt as number))
  const b = rows.find(r => r.run === 'run-b')
  assert.deepEqual([b?.outcome, b?.step, b?.errorCode], ['failed', 'partition', 'ERR_DISK_TOO_SMALL'])
  assert.equal(rows.find(r => r.run === 'run-d')?.outcome, 'running')

  const compute = await run(SI_SERVER, ['history', '--repo', repo, '--image', 'compute'])
  assert.equal(compute.code, 0, compute.stderr)
  assert.match(compute.stdout, /^STARTED +NODE +IMAGE/)
  assert.match(compute.stdout, /node02 +compute@2 .*failed +partition .*ERR_DISK_TOO_SMALL: sda: 1 GB/)
  assert.doesNotMatch(compute.stdout, /storage@1/)
  assert.equal((await run(SI_SERVER, ['history', '--repo', repo, '--since', '2099-01-01', '--json'])).stdout, '')
  assert.equal((await run(SI_SERVER, ['history', '--repo', repo, '--since', '1h', '--json'])).stdout.trim().split('\n').length, 4)

  const bad = await run(SI_SERVER, ['history', '--repo', repo, '--since', 'yesterday'])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /--since "yesterday": expected a date \(2026-05-01, 2026-05-01T14:00\) or a time ago/)
  const none = await run(SI_SERVER, ['history', '--repo', join(dir, 'nowhere')])
  assert.equal(none.code, 1)
  assert.match(none.stderr, /ERR_HISTORY: .*no history yet/)
})
