// Load test of the operators' console: N simulated nodes (default 1 000), each from its
// own loopback address, report to a real `si-server serve` for a while as agents do
// (each step at once, figures at the interval the server's answer asks for), while a
// headless Chromium shows the dashboard. Measures the server's CPU and memory, the
// reports it took, and how long the page takes to show a node's new progress.
//
// Usage: node --import tsx scripts/console-load.ts [--nodes N] [--seconds S]   (make console-load)
import http from 'node:http'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createServer } from 'node:net'
import { option } from '../src/config/options.ts'
import { requestCredential } from '../src/deploy/credential-client.ts'
import { REPORT_AUTH_HEADER, reportAuth } from '../src/formats/node-auth.ts'
import { integer } from '../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../src/config/command-line.ts'
import { commandHelp } from '../src/config/help.ts'

const ROOT = resolve(import.meta.dirname, '..')
const SI_SERVER = join(ROOT, 'dist', 'si-server')
const CHROMIUM = '/usr/bin/chromium'
const CLOCK_TICKS = 100
const STEPS = ['plan', 'torrent', 'download']
/** Steps after the download: a node ends done, or (one in fifty) failed. */
const FAIL_EVERY = 50
/** Page-update probes: a node's progress is set to a marker, the page is watched for it. */
const PROBES = 10
const OPTIONS = {
  nodes: option({ flag: 'nodes', arg: 'N', help: 'simulated nodes, each from its own 127.x.y.z address', default: 1000, parse: integer(1, 60_000) }),
  seconds: option({ flag: 'seconds', arg: 'S', help: 'how long the nodes report', default: 60, parse: integer(5, 3600) })
}
const USAGE = commandHelp(['node --import tsx scripts/console-load.ts [options]   (or: make console-load)'], OPTIONS, {
  intro: 'Posts the reports of many simulated nodes to a real si-server (dist/, from make build) and measures its CPU, memory and the dashboard\'s time to update.'
})

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => { const a = s.address(); s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0)) })
    s.on('error', reject)
  })
}

/** One report, signed with the node's credential as the agent signs it. */
function post (port: number, node: string, credential: string, from: string, body: string, agent: http.Agent): Promise<{ status: number; interval?: number }> {
  return new Promise(resolve => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), [REPORT_AUTH_HEADER]: reportAuth(credential, node, body) }
    const req = http.request({ host: '127.0.0.1', port, path: `/api/nodes/${node}/events`, method: 'POST', localAddress: from, agent, headers }, res => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('end', () => {
        let interval: number | undefined
        try { interval = (JSON.parse(text) as { intervalSeconds?: number }).intervalSeconds } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, interval })
      })
    })
    req.setTimeout(10_000, () => req.destroy())
    req.on('error', () => resolve({ status: 0 }))
    req.end(body)
  })
}

/** CPU seconds and resident memory of a process, from /proc. */
function usage (pid: number): { cpuSeconds: number; rssBytes: number; peakRssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
  return { cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS, rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') }
}

class SimulatedNode {
  private step = 0
  private progress = 0
  /** as the server's last answer asked */
  interval = 2
  private next = 0
  readonly address: string
  /** asked from the server before the timed run, as each agent asks for its own */
  credential = ''
  constructor (readonly name: string, index: number, private readonly port: number, private readonly agent: http.Agent) {
    this.address = `127.${10 + (index >> 16)}.${(index >> 8) & 255}.${(index & 255) + 1 > 254 ? 254 : (index & 255) + 1}`
  }

  report (now: number, stats: { sent: number; refused: number }, marker?: number): Promise<void> | undefined {
    if (marker === undefined && now < this.next) return undefined
    const phases = this.step < STEPS.length ? STEPS[this.step] : undefined
    let body: object
    if (marker !== undefined) body = { phase: 'downloading', step: 'download', progress: marker, downloadRate: 1e6 }
    else if (phases !== undefined) { body = { phase: phases, image: 'compute@1', identity: { macs: [], addresses: [this.address] }, hardware: { cpus: 8, memoryBytes: 16e9, disks: [{ name: 'sda', bytes: 5e11 }] } }; this.step++ }
    else {
      this.progress = Math.min(0.99, this.progress + 0.002 + Math.random() * 0.004)
      body = { phase: 'downloading', step: 'download', progress: this.progress, downloadRate: 2e6 + Math.random() * 1e6, uploadRate: 1e6, bytesFromServer: this.progress * 1e8, bytesFromPeers: this.progress * 9e8, peers: 12 }
    }
    this.next = now + this.interval * 1000 * (phases !== undefined ? 0.1 : 1)
    return post(this.port, this.name, this.credential, this.address, JSON.stringify(body), this.agent).then(r => {
      stats.sent++
      if (r.status !== 200) stats.refused++
      if (r.interval !== undefined) this.interval = r.interval
    })
  }

  finish (stats: { sent: number; refused: number }, index: number): Promise<void> {
    const body = index % FAIL_EVERY === 0
      ? { phase: 'failed', step: 'download', error: { code: 'ERR_STALLED', message: 'no piece in 60 s' }, log: 'download\nerror: ERR_STALLED\n'.repeat(20) }
      : { phase: 'done', step: 'installed', progress: 1 }
    return post(this.port, this.name, this.credential, this.address, JSON.stringify(body), this.agent).then(r => { stats.sent++; if (r.status !== 200) stats.refused++ })
  }
}

async function main (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  if (!existsSync(SI_SERVER)) throw new Error(`${SI_SERVER} is missing: run make build first`)
  const dir = await mkdtemp(join(tmpdir(), 'si-console-load-'))
  const port = await freePort()
  const server = spawn(SI_SERVER, ['serve', '--repo', join(dir, 'repo'), '--listen', `127.0.0.1:${port}`, '--peer-listen', `127.0.0.1:${await freePort()}`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let serverErr = ''
  server.stderr.on('data', (c: Buffer) => { serverErr += c.toString() })
  const { chromium } = await import('playwright-core')
  const browser = existsSync(CHROMIUM)
    ? await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] })
    : undefined
  const agent = new http.Agent({ keepAlive: false, maxSockets: 256 })
  try {
    for (let i = 0; i < 100 && !serverErr.includes('serving'); i++) await new Promise(r => setTimeout(r, 100))
    if (!serverErr.includes('serving')) throw new Error(`si-server did not start: ${serverErr}`)
    const pid = server.pid as number
    const nodes = Array.from({ length: o.nodes }, (_, i) => new SimulatedNode(`sim${String(i).padStart(5, '0')}`, i, port, agent))
    for (const node of nodes) node.credential = await requestCredential(`http://127.0.0.1:${port}`, { node: node.name, macs: [] }, { attempts: 3 })
    const stats = { sent: 0, refused: 0 }
    const page = browser !== undefined ? await browser.newPage({ viewport: { width: 1600, height: 1000 } }) : undefined
    await page?.goto(`http://127.0.0.1:${port}/`)

    const before = usage(pid)
    const started = Date.now()
    const inflight = new Set<Promise<void>>()
    const probeTimes: number[] = []
    let nextProbe = started + 20_000
    while (Date.now() - started < o.seconds * 1000) {
      const now = Date.now()
      for (const n of nodes) {
        if (inflight.size >= 256) await Promise.race(inflight)
        const p = n.report(now, stats)
        if (p !== undefined) { inflight.add(p); void p.finally(() => inflight.delete(p)) }
      }
      if (page !== undefined && now >= nextProbe && probeTimes.length < PROBES) {
        // Time from a node's report to the page showing it: up to one poll period plus the render.
        const probe = nodes[probeTimes.length * 37 % nodes.length]
        // Below any other node's progress: under the default order the probe is on the first rows.
        const marker = Number((0.0001 * (probeTimes.length + 1)).toFixed(4))
        const t0 = Date.now()
        await probe.report(t0, stats, marker)
        await page.waitForFunction(([name, m]) => document.querySelector(`tr.node[data-node="${name}"]`)?.getAttribute('data-progress') === String(m), [probe.name, marker] as const, { timeout: 20_000, polling: 20 })
        probeTimes.push(Date.now() - t0)
        nextProbe = Date.now() + 2_000
      }
      await new Promise(r => setTimeout(r, 50))
    }
    await Promise.all(inflight)
    const during = usage(pid)
    const intervals = nodes.map(n => n.interval).sort((a, b) => a - b)
    const elapsed = (Date.now() - started) / 1000
    await Promise.all(nodes.map((n, i) => n.finish(stats, i)))
    const renderMs = page !== undefined ? await page.evaluate('(() => { const t = performance.now(); renderFleet(); return performance.now() - t })()') as number : undefined
    const nodesPage = await fetch(`http://127.0.0.1:${port}/api/nodes`)
    const sorted = [...probeTimes].sort((a, b) => a - b)
    const result = {
      nodes: o.nodes,
      seconds: Number(elapsed.toFixed(1)),
      reportsSent: stats.sent,
      reportsRefused: stats.refused,
      reportsPerSecond: Number((stats.sent / elapsed).toFixed(1)),
      reportIntervalSecondsAsked: intervals[Math.floor(intervals.length / 2)],
      serverCpuPercentOfOneCore: Number((100 * (during.cpuSeconds - before.cpuSeconds) / elapsed).toFixed(1)),
      serverRssMB: Number((during.rssBytes / 1e6).toFixed(1)),
      serverPeakRssMB: Number((during.peakRssBytes / 1e6).toFixed(1)),
      apiNodesStatus: nodesPage.status,
      apiNodesBytes: (await nodesPage.arrayBuffer()).byteLength,
      pageUpdateMs: sorted.length > 0 ? { median: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1], probes: sorted.length } : 'no chromium',
      pageRenderAllRowsMs: renderMs !== undefined ? Number(renderMs.toFixed(1)) : 'no chromium'
    }
    process.stdout.write(JSON.stringify(result, null, 2) + '\n')
    return stats.refused === 0 && nodesPage.status === 200 ? 0 : 1
  } finally {
    await browser?.close()
    agent.destroy()
    server.kill('SIGTERM')
    await new Promise(r => server.once('close', r))
    await rm(dir, { recursive: true, force: true })
  }
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`console-load: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
