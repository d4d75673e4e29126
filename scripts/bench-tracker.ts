// The tracker at fleet scale: one swarm of NODES peers (20 000 by default, the largest
// fleet a server installs at once), each announcing from its own address (127/8 on
// loopback: one node, one address, as on a cluster LAN), then every node announcing once
// more, as each does every interval. Reports the tracker process's memory with the swarm
// full (heap after a full GC, and RSS, over its idle baseline) and its CPU time per
// announce, HTTP parsing included. The tracker runs in a child process (this script with
// --serve), so the clients' work is not counted; each announce is a new connection, as
// the agents' are.
//   node --import tsx scripts/bench-tracker.ts [--nodes 20000] [--concurrency 32]
import http from 'node:http'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { option, switchOption } from '../src/config/options.ts'
import { integer } from '../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../src/config/command-line.ts'
import { commandHelp } from '../src/config/help.ts'
import { SiError } from '../src/errors.ts'
import { Tracker } from '../src/tracker/tracker.ts'
import { runIfMain } from './bench/exec.ts'

const DEFAULT_NODES = 20_000
const DEFAULT_CONCURRENCY = 32
/** Distinct node addresses nodeAddress() makes. */
const MAX_NODES = 250 * 250 * 200
const STATS_PATH = '/bench-stats'
const REQUEST_TIMEOUT_MS = 10_000
/** The announce interval the fleet runs at (the tracker's default): the load a fleet makes is NODES / this per second. */
const INTERVAL_SECONDS = 15
const INFO_HASH = randomBytes(20)
const BENCH_TTL_SECONDS = 3_600

interface ProcessStats { heapUsed: number; rss: number; cpuMicros: number }

const OPTIONS = {
  nodes: option({ flag: 'nodes', arg: 'N', help: 'peers in the swarm, one address each', default: DEFAULT_NODES, parse: integer(1, MAX_NODES) }),
  concurrency: option({ flag: 'concurrency', arg: 'N', help: 'announces in flight at once', default: DEFAULT_CONCURRENCY, parse: integer(1, 1024) }),
  serve: switchOption({ flag: 'serve', help: 'be the tracker process (the benchmark starts it)' })
}
const USAGE = commandHelp(['node --import tsx scripts/bench-tracker.ts [options]'], OPTIONS, {
  intro: `The tracker's memory and announce CPU with one swarm of N peers, each from its own
loopback address, measured in the tracker's own process.`
})

async function main (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  if (o.serve) { serve(); return 0 }
  await measure(o.nodes, o.concurrency)
  return 0
}

runIfMain(import.meta.url, main, line => process.stderr.write(`bench-tracker: ${line}\n`))

/** The child: a tracker that serves one torrent, and its own figures on STATS_PATH. */
function serve (): void {
  const served = servedInfoHash()
  const tracker = new Tracker({
    // Filling 20 000 peers from one machine takes longer than the 45 s TTL: none may expire meanwhile.
    config: { intervalSeconds: INTERVAL_SECONDS, peerTtlSeconds: BENCH_TTL_SECONDS },
    torrents: { status: hex => ({ served: hex === served }), refresh: async () => {} }
  })
  tracker.start()
  const server = http.createServer((req, res) => {
    if (req.url === STATS_PATH) {
      (globalThis as { gc?: () => void }).gc?.()
      const cpu = process.cpuUsage()
      const stats: ProcessStats = { heapUsed: process.memoryUsage().heapUsed, rss: process.memoryUsage.rss(), cpuMicros: cpu.user + cpu.system }
      res.end(JSON.stringify(stats))
      return
    }
    if (!tracker.handle(req, res)) { res.statusCode = 404; res.end() }
  })
  server.listen(0, '127.0.0.1', () => {
    const address = server.address()
    process.stdout.write(`${typeof address === 'object' && address !== null ? address.port : 0}\n`)
  })
  process.on('SIGTERM', () => { tracker.stop(); server.close(); process.exit(0) })
}

function servedInfoHash (): string {
  const hex = process.env.BENCH_INFO_HASH ?? ''
  if (!/^[0-9a-f]{40}$/.test(hex)) throw new SiError('ERR_BENCH', 'the child needs BENCH_INFO_HASH')
  return hex
}

async function measure (nodes: number, concurrency: number): Promise<void> {
  const child = spawn(process.execPath, ['--expose-gc', ...process.execArgv, import.meta.filename, '--serve'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_INFO_HASH: INFO_HASH.toString('hex') }
  })
  try {
    const [line] = await once(child.stdout, 'data') as [Buffer]
    const port = Number(line.toString().trim())
    const base = `http://127.0.0.1:${port}`
    const peerIds = Array.from({ length: nodes }, () => randomBytes(20))
    const idle = await stats(base)

    const fillStarted = performance.now()
    const fill = await announceAll(base, peerIds, concurrency, 'started')
    const fillSeconds = (performance.now() - fillStarted) / 1000
    const full = await stats(base)

    const roundStarted = performance.now()
    const round = await announceAll(base, peerIds, concurrency, undefined)
    const roundSeconds = (performance.now() - roundStarted) / 1000
    const after = await stats(base)

    const cpuPerAnnounce = (after.cpuMicros - full.cpuMicros) / nodes
    const needed = nodes / INTERVAL_SECONDS
    const figures = {
      nodes,
      listed: round.listed,
      refused: fill.refused + round.refused,
      heapMiB: (full.heapUsed - idle.heapUsed) / 2 ** 20,
      rssMiB: (full.rss - idle.rss) / 2 ** 20,
      heapBytesPerPeer: (full.heapUsed - idle.heapUsed) / nodes,
      fillSeconds,
      roundSeconds,
      cpuMicrosPerAnnounce: cpuPerAnnounce,
      announcesPerSecondNeeded: needed,
      cpuShareAtInterval: needed * cpuPerAnnounce / 1e6
    }
    process.stdout.write(`tracker with ${nodes} peers in one swarm (one address each; ${figures.listed} listed, ${figures.refused} refused):\n` +
      `  memory over idle: heap ${figures.heapMiB.toFixed(1)} MiB (${figures.heapBytesPerPeer.toFixed(0)} B a peer), RSS ${figures.rssMiB.toFixed(1)} MiB\n` +
      `  announce CPU (tracker process, HTTP included): ${cpuPerAnnounce.toFixed(0)} µs each; ${nodes} nodes every ${INTERVAL_SECONDS} s ` +
      `make ${needed.toFixed(0)} announces/s = ${(figures.cpuShareAtInterval * 100).toFixed(1)}% of one core\n` +
      `  wall: fill ${fillSeconds.toFixed(1)} s, one more round ${roundSeconds.toFixed(1)} s (${concurrency} clients at a time, client and tracker on one machine)\n` +
      JSON.stringify(figures) + '\n')
  } finally {
    child.kill('SIGTERM')
    if (child.exitCode === null) await once(child, 'close')
  }
}

/** The i-th node's address: 127.A.B.C with B and C in 1..250 (never 127.0.0.1, which the tracker does not cap). */
function nodeAddress (i: number): string {
  return `127.${10 + Math.floor(i / 62_500)}.${1 + Math.floor(i / 250) % 250}.${1 + i % 250}`
}

async function announceAll (base: string, peerIds: Buffer[], concurrency: number, event: string | undefined): Promise<{ refused: number; listed: number }> {
  let next = 0
  let refused = 0
  let listed = 0
  const worker = async (): Promise<void> => {
    while (next < peerIds.length) {
      const i = next++
      const query = `info_hash=${escape(INFO_HASH)}&peer_id=${escape(peerIds[i])}&port=6881&uploaded=0&downloaded=0&left=1000&compact=1&numwant=50` +
        (event !== undefined ? `&event=${event}` : '')
      const body = await get(`${base}/announce?${query}`, nodeAddress(i))
      const text = body.toString('latin1')
      if (text.includes('failure reason')) refused++
      const incomplete = /10:incompletei(\d+)e/.exec(text)
      const complete = /8:completei(\d+)e/.exec(text)
      if (incomplete !== null && complete !== null) listed = Math.max(listed, Number(incomplete[1]) + Number(complete[1]))
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { refused, listed }
}

async function stats (base: string): Promise<ProcessStats> {
  return JSON.parse((await get(`${base}${STATS_PATH}`, '127.0.0.1')).toString()) as ProcessStats
}

function escape (bytes: Buffer): string {
  return [...bytes].map(b => '%' + b.toString(16).padStart(2, '0')).join('')
}

function get (url: string, localAddress: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, localAddress, timeout: REQUEST_TIMEOUT_MS }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve(Buffer.concat(chunks)))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new SiError('ERR_BENCH', `GET ${url} timed out`)))
    req.on('error', reject)
  })
}
