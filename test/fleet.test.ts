// The fleet view over real HTTP: nodes' reports become rows, the server paces them,
// and no flood (of names, bytes or requests) makes it grow without bound or answer 500.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImageServer } from '../src/server/image-server.ts'
import { Fleet } from '../src/server/fleet.ts'
import type { FleetConfig } from '../src/server/console-config.ts'
import { ServerReporter } from '../src/deploy/reporter.ts'
import { REPORT_LIMITS, type NodeReport } from '../src/formats/node-report.ts'
import { waitFor } from './helpers/interop.ts'
import { requestCredential } from '../src/deploy/credential-client.ts'
import { reportHeaders } from './helpers/reports.ts'

const dirs: string[] = []
const servers: ImageServer[] = []
after(async () => {
  for (const s of servers) await s.stop()
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

async function startServer (fleet: Partial<FleetConfig> = {}): Promise<{ server: ImageServer; url: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'si-fleet-'))
  dirs.push(dir)
  const server = new ImageServer({ repoDir: join(dir, 'repo'), host: '127.0.0.1', port: 0, peerPort: 0, seed: false, fleet })
  await server.start()
  servers.push(server)
  return { server, url: `http://127.0.0.1:${server.httpPort}` }
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

/** One request, from a chosen loopback address (all of 127.0.0.0/8 is this machine). */
function request (url: string, opts: { method?: string; body?: string; from?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', localAddress: opts.from, headers: opts.headers ?? { 'content-type': 'application/json' }, agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
    })
    req.on('error', reject)
    req.setTimeout(10_000, () => req.destroy(new Error(`${url}: no answer in 10 s`)))
    req.end(opts.body)
  })
}

async function report (url: string, node: string, report: Partial<NodeReport> & Record<string, unknown>, from?: string): Promise<Answer> {
  const body = JSON.stringify(report)
  return await request(`${url}/api/nodes/${node}/events`, { method: 'POST', body, from, headers: await reportHeaders(url, node, body) })
}

test('a report becomes the node\'s row, its answer says when to report next, and a bad field is named', async () => {
  const { url } = await startServer()
  const answer = await report(url, 'node01', {
    phase: 'downloading', step: 'download', run: 'r1', image: 'compute@3', progress: 0.25, downloadRate: 5e6, uploadRate: 1e6,
    bytesFromServer: 1000, bytesFromPeers: 3000, peers: 4,
    identity: { hostname: 'node01', macs: ['52:54:00:00:00:01'], addresses: ['10.0.0.1'] },
    hardware: { cpus: 8, memoryBytes: 16e9, disks: [{ name: 'sda', bytes: 512e9 }] }
  })
  assert.equal(answer.status, 200, answer.body)
  assert.ok((JSON.parse(answer.body) as { intervalSeconds: number }).intervalSeconds >= 1)
  const page = JSON.parse((await request(`${url}/api/nodes`)).body) as { total: number; nodes: Array<Record<string, unknown>> }
  assert.equal(page.total, 1)
  assert.equal(page.nodes[0].phase, 'downloading')
  assert.equal(page.nodes[0].bytesFromPeers, 3000)
  assert.deepEqual((page.nodes[0].hardware as { disks: unknown[] }).disks, [{ name: 'sda', bytes: 512e9 }])

  const bad = await report(url, 'node01', { phase: 'downloading', progress: 7 })
  assert.equal(bad.status, 400)
  assert.match(bad.body, /field \\"progress\\": expected a number from 0 to 1/)
  const detail = JSON.parse((await request(`${url}/api/nodes/node01`)).body) as { timeline: Array<{ step: string }> }
  assert.deepEqual(detail.timeline.map(t => t.step), ['download'])
  assert.equal((await request(`${url}/api/nodes?sort=size`)).status, 400)
})

test('the report interval grows with the number of nodes installing, within its bounds', () => {
  let now = 0
  const fleet = new Fleet({ config: { targetReportsPerSecond: 10, minReportIntervalSeconds: 2, maxReportIntervalSeconds: 30 }, now: () => now })
  assert.equal(fleet.intervalSeconds(), 2)
  for (let i = 0; i < 100; i++) fleet.record(`n${i}`, `10.0.${i >> 8}.${i & 255}`, { phase: 'downloading', progress: 0.1 })
  assert.equal(fleet.intervalSeconds(), 10, '100 nodes at 10 reports/s: every 10 s')
  for (let i = 100; i < 1000; i++) fleet.record(`n${i}`, `10.0.${i >> 8}.${i & 255}`, { phase: 'downloading', progress: 0.1 })
  assert.equal(fleet.intervalSeconds(), 30, 'never past the maximum')
  now += 1000
  for (let i = 0; i < 1000; i++) fleet.record(`n${i}`, `10.0.${i >> 8}.${i & 255}`, { phase: 'done', progress: 1 })
  assert.equal(fleet.intervalSeconds(), 2, 'finished nodes do not count')
})

test('the agent\'s reporter sends each step, adopts the server\'s interval, and sends its log with a failure', async () => {
  const { server, url } = await startServer({ minReportIntervalSeconds: 1, maxReportIntervalSeconds: 1 })
  const reporter = new ServerReporter({ server: url, node: 'agent01', credential: requestCredential(url, { node: 'agent01', macs: [] }, { attempts: 1 }), facts: () => ({ identity: { macs: ['52:54:00:00:00:09'], addresses: ['127.0.0.1'] }, hardware: { cpus: 2, memoryBytes: 1e9, disks: [] } }) })
  const sink = reporter.sink()
  sink({ type: 'phase', phase: 'torrent' })
  sink({ type: 'image', name: 'golden', infoHash: 'ab'.repeat(20), length: 1000 })
  sink({ type: 'phase', phase: 'download' })
  for (let i = 1; i <= 5; i++) sink({ type: 'progress', phase: 'download', progress: i / 10, verifiedBytes: i * 100, totalBytes: 1000, downloadRate: 1e6, uploadRate: 0, downloaded: i * 100, downloadedFromServer: i * 50, uploaded: 0, peers: 2 } as never)
  await waitFor('the interval from the server', 5000, () => reporter.interval === 1 ? true : undefined)
  await waitFor('a progress report', 5000, () => (server.fleet.get('agent01')?.progress ?? 0) >= 0.5 ? true : undefined)
  sink({ type: 'error', phase: 'failed', code: 'ERR_DISK_TOO_SMALL', message: 'sda holds 1 GB, the layout needs 8 GB' })
  await reporter.flush()
  const d = server.fleet.get('agent01')
  assert.equal(d?.phase, 'failed')
  assert.equal(d?.error?.code, 'ERR_DISK_TOO_SMALL')
  assert.equal(d?.bytesFromPeers, 250)
  assert.match(d?.log ?? '', /download[\s\S]*error: ERR_DISK_TOO_SMALL/)
  assert.deepEqual(d?.timeline.map(t => t.phase), ['planning', 'downloading', 'failed'])
})

test('the installer\'s firmware and finish reach the fleet view as typed facts; a bad firmware is named', async () => {
  const { server, url } = await startServer()
  const reporter = new ServerReporter({ server: url, node: 'agent02', credential: requestCredential(url, { node: 'agent02', macs: [] }, { attempts: 1 }), facts: () => ({ identity: { macs: [], addresses: ['127.0.0.1'] }, hardware: { cpus: 1, memoryBytes: 1e9, disks: [] } }) })
  const sink = reporter.sink()
  sink({ type: 'installed', phase: 'installed', image: 'golden@1', seconds: 12.5, firmware: 'uefi', finish: 'kexec', uptimeSeconds: 40.2 })
  await reporter.flush()
  const d = server.fleet.get('agent02')
  assert.equal(d?.phase, 'done')
  assert.deepEqual(d?.system, { firmware: 'uefi', finish: 'kexec', uptimeSeconds: 40.2 })
  const bad = await report(url, 'node03', { phase: 'booted', system: { firmware: 'coreboot', kernel: '6.1.0-28-amd64' } } as Record<string, unknown>)
  assert.equal(bad.status, 400)
  assert.match(bad.body, /field \\"system\.firmware\\"/)
})

test('a flood of invented names and oversized posts leaves the fleet bounded and /api/nodes answering in pages', async () => {
  const maxBytes = 2 * 1024 * 1024
  const { server, url } = await startServer({ maxBytes, maxNodesPerAddress: 50, requestsPerSecondPerAddress: 1e6, requestBurstPerAddress: 1e6, maxPageSize: 100 })
  const big = JSON.stringify({ phase: 'failed', log: 'x'.repeat(60 * 1024) })
  assert.equal((await request(`${url}/api/nodes/n0/events`, { method: 'POST', body: big })).status, 413, '60 KB is past the report limit')
  const log = 'y'.repeat(REPORT_LIMITS.logBytes - 100)
  const statuses = new Map<number, number>()
  // 20 addresses x 80 names: past the share of each address and past the byte bound.
  for (let a = 1; a <= 20; a++) {
    const from = `127.0.3.${a}`
    await Promise.all(Array.from({ length: 80 }, async (_, i) => {
      const r = await report(url, `flood-${a}-${i}`, { phase: 'failed', error: { code: 'ERR_X', message: 'boom' }, log }, from)
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
    }))
  }
  assert.equal(statuses.get(500), undefined)
  assert.ok((statuses.get(429) ?? 0) >= 20 * 30, `names past an address's share are refused: ${JSON.stringify([...statuses])}`)
  assert.ok(server.fleet.storedBytes <= maxBytes, `the fleet holds ${server.fleet.storedBytes} bytes`)
  // Every node can still be read, a page at a time.
  let seen = 0
  for (let offset = 0; ; offset += 100) {
    const r = await request(`${url}/api/nodes?offset=${offset}&limit=1000`)
    assert.equal(r.status, 200)
    const page = JSON.parse(r.body) as { total: number; limit: number; nodes: unknown[] }
    assert.equal(page.limit, 100, 'a page is never bigger than the server allows')
    seen += page.nodes.length
    if (page.nodes.length === 0) break
  }
  assert.equal(seen, server.fleet.size)
  // Nodes still installing are kept: the finished ones made room.
  assert.equal((await report(url, 'real-node', { phase: 'downloading', progress: 0.5 }, '127.0.4.1')).status, 200)
  assert.equal(server.fleet.get('real-node')?.phase, 'downloading')
})

test('one address past its request budget gets 429 with Retry-After; another address is served', async () => {
  const { url } = await startServer({ requestsPerSecondPerAddress: 5, requestBurstPerAddress: 10 })
  const answers = await Promise.all(Array.from({ length: 30 }, () => request(`${url}/api/nodes`, { from: '127.0.5.1' })))
  const limited = answers.filter(a => a.status === 429)
  assert.ok(limited.length >= 15, `${limited.length} of 30 refused`)
  assert.ok(Number(limited[0].headers['retry-after']) >= 1)
  assert.match(limited[0].body, /ERR_RATE_LIMITED/)
  assert.equal((await request(`${url}/api/nodes`, { from: '127.0.5.2' })).status, 200)
  assert.equal((await report(url, 'n1', { phase: 'booting' }, '127.0.5.1')).status, 429, 'reports share the budget')
})
