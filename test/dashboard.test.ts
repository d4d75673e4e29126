// The web dashboard in a real headless Chromium, during a real deployment: 8 agents
// pull an image through the swarm while a ninth fails on purpose. The table shows every
// node, progress moves, the failed node shows its error and its log, the charts have
// data. Screenshots are kept in dist/artifacts/ (DASHBOARD_ARTIFACTS overrides).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { makeTree } from './helpers/trees.ts'
import { requireBuild, run, startServer, DIST, SI_AGENT, SI_SERVER, type ImageServerHandle } from './helpers/processes.ts'

const CHROMIUM = '/usr/bin/chromium'
const NODES = 8
const IMAGE_MB = 24
/** The server alone would need NODES x 24 MB / 3 MB/s = 64 s: long enough to watch progress move. */
const SERVER_UPLOAD_LIMIT = '3MB'
const AGENT_TIMEOUT_MS = 150_000
const ARTIFACTS = resolve(process.env.DASHBOARD_ARTIFACTS ?? join(DIST, 'artifacts'))
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`

let dir: string
let repo: string
let server: ImageServerHandle | undefined

before(async () => {
  if (skip !== false) return
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-dashboard-'))
  repo = join(dir, 'repo')
  await makeTree(join(dir, 'source'), IMAGE_MB)
  const added = await run(SI_SERVER, ['image', 'add', 'golden', '--from', join(dir, 'source'), '--repo', repo, '--compression', 'none'])
  assert.equal(added.code, 0, added.stderr)
  await mkdir(ARTIFACTS, { recursive: true })
})

after(async () => {
  await server?.process.stop()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

interface Row { node: string; phase: string; progress: number; text: string }

test(`the dashboard in headless Chromium follows ${NODES} agents and shows the one that failed`, { skip }, async () => {
  const { chromium } = await import('playwright-core')
  server = await startServer(repo, ['--upload-limit', SERVER_UPLOAD_LIMIT, '--announce-interval', '2'])
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: 30_000
  })
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } })
    const pageErrors: string[] = []
    page.on('pageerror', err => pageErrors.push(err.message))
    await page.goto(server.url, { timeout: 15_000 })
    await page.waitForSelector('#status', { timeout: 5_000 })

    // A regular file where the failing node's target should be: it cannot write there.
    await writeFile(join(dir, 'not-a-dir'), 'x')
    const agent = (node: string, target: string): Promise<{ node: string; code: number | null; stderr: string }> =>
      run(SI_AGENT, ['deploy', '--server', server!.url, '--image', 'golden', '--target', target, '--node', node, '--peer-host', '127.0.0.1',
        '--seed-wait', 'swarm', '--seed-max', '20', '--poll', '1'], { timeoutMs: AGENT_TIMEOUT_MS }).then(r => ({ node, code: r.code, stderr: r.stderr }))
    const names = Array.from({ length: NODES }, (_, i) => `node${String(i + 1).padStart(2, '0')}`)
    const agents = Promise.all([...names.map(n => agent(n, join(dir, 'targets', n))), agent('node-bad', join(dir, 'not-a-dir', 'target'))])

    // Watch the table as an administrator would, until every node has finished.
    const seen = new Map<string, number[]>()
    let screenshotMidway = false
    const deadline = Date.now() + AGENT_TIMEOUT_MS
    let rows: Row[] = []
    for (;;) {
      rows = await page.$$eval('#nodes tbody tr.node', trs => trs.map(tr => ({
        node: (tr as HTMLElement).dataset.node ?? '', phase: (tr as HTMLElement).dataset.phase ?? '', progress: Number((tr as HTMLElement).dataset.progress), text: tr.textContent ?? ''
      })))
      for (const r of rows) {
        const list = seen.get(r.node) ?? []
        if (list[list.length - 1] !== r.progress) list.push(r.progress)
        seen.set(r.node, list)
      }
      if (!screenshotMidway && rows.some(r => r.progress > 0.2 && r.progress < 0.9)) {
        await page.screenshot({ path: join(ARTIFACTS, 'dashboard-midway.png'), fullPage: true })
        screenshotMidway = true
      }
      const finished = rows.filter(r => r.phase === 'done' || r.phase === 'failed').length
      if (finished === NODES + 1) break
      assert.ok(Date.now() < deadline, `the table never showed every node finished: ${JSON.stringify(rows.map(r => [r.node, r.phase, r.progress]))}`)
      await new Promise(r => setTimeout(r, 500))
    }
    const results = await agents
    for (const r of results) assert.equal(r.code, r.node === 'node-bad' ? 1 : 0, `${r.node}: ${r.stderr.slice(-1000)}`)

    assert.deepEqual(rows.map(r => r.node).sort(), [...names, 'node-bad'].sort(), 'every node has its row')
    assert.equal(rows[0].node, 'node-bad', 'the failure is on top')
    assert.match(rows[0].text, /ERR_[A-Z_]+/, 'the failed row shows its error code')
    for (const n of names) assert.equal(rows.find(r => r.node === n)?.phase, 'done')
    const moving = [...seen].filter(([node, ps]) => node !== 'node-bad' && ps.some(p => p > 0 && p < 1) && ps[ps.length - 1] === 1)
    assert.ok(moving.length >= NODES / 2, `progress seen moving on ${moving.length} nodes: ${JSON.stringify([...seen])}`)

    // The charts were fed: fleet-wide samples with download and upload rates.
    const series = await page.evaluate('state.series.map(s => [s.downloadRate, s.serverUploadRate, s.peerUploadRate])') as number[][]
    assert.ok(series.some(s => s[0] > 0), 'an aggregate download rate was charted')
    assert.ok(series.some(s => s[2] > 0), 'peer upload was charted')
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-fleet.png'), fullPage: true })

    // The failed node's page: its error, its timeline and the tail of its log.
    await page.click('#nodes tbody tr.node[data-node="node-bad"] td:nth-child(4)')
    await page.waitForFunction(() => !(document.querySelector('#view-node') as HTMLElement).hidden && (document.querySelector('#node-log')?.textContent ?? '').includes('error'), undefined, { timeout: 10_000 })
    const error = await page.textContent('#node-error')
    assert.match(error ?? '', /ERR_[A-Z_]+/)
    assert.match(await page.textContent('#node-log') ?? '', /torrent[\s\S]*error: ERR_/)
    assert.ok(await page.$$eval('#node-timeline tbody tr', trs => trs.length) >= 2)
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-node-bad.png'), fullPage: true })

    // Filters: by phase.
    await page.goto(`${server.url}/#`)
    await page.waitForFunction(() => document.querySelectorAll('#nodes tbody tr.node').length === 9, undefined, { timeout: 10_000 })
    await page.selectOption('#filter-phase', 'failed')
    assert.deepEqual(await page.$$eval('#nodes tbody tr.node', trs => trs.map(tr => (tr as HTMLElement).dataset.node)), ['node-bad'])

    // The history page lists the deployments.
    await page.goto(`${server.url}/#history`)
    await page.waitForFunction(() => document.querySelectorAll('#history tbody tr').length >= 9, undefined, { timeout: 10_000 })
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-history.png'), fullPage: true })
    assert.deepEqual(pageErrors, [], 'no script error in the page')
    process.stderr.write(`# dashboard screenshots: ${ARTIFACTS}/dashboard-{midway,fleet,node-bad,history}.png\n`)
  } finally {
    await browser.close()
  }
  // The one warning expected: this server was started without --require-token.
  const unexpected = server.process.stderr.split('\n').filter(line => !line.includes('--require-token makes nodes prove themselves')).join('\n')
  assert.doesNotMatch(unexpected, /warning|error/i, 'the server (and node:sqlite in it) printed nothing unexpected')
  const history = await run(SI_SERVER, ['history', '--repo', repo])
  assert.equal(history.code, 0, history.stderr)
  assert.equal(history.stderr, '', 'nothing unexpected on stderr')
  assert.match(history.stdout, /node-bad .*failed/)
  await writeFile(join(ARTIFACTS, 'history.txt'), history.stdout)
})
