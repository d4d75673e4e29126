// `make bench` / `make bench-smoke`: builds emulated clusters, runs every transport of
// every scenario, writes results/*.json and REPORT.md with figures. Run as root.
//   node --import tsx scripts/bench/run.ts [--plan full|smoke] [--out DIR] [--rate MBIT]
//     [--image-mib N] [--piece-kib N] [--sizes 1,2,4,8,16,32] [--unicast-max N] [--rsync-max N] [--stagger S]
//     [--rootlike-entries N] [--rootlike-sizes 1,8,16] [--rootlike-cache DIR]
//     [--raw-mib N] [--only scale,rootlike,cpufair,hetero,loss,stagger,leave,raw] [--transports bt,http,...]
//     [--merge]   keep the results already in OUT/results, replacing only the trials re-run
//     [--report-only]   rewrite OUT/REPORT.md from OUT/results, running nothing
//     [--agent-bin FILE] [--server-bin FILE]  run these executables instead of dist/'s
//     [--ns-prefix NAME]  prefix of this run's network namespaces (default sibench-)
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { cpus, release } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { listOption, option, switchOption, type Values } from '../../src/config/options.ts'
import { decimal, integer, nonEmpty, oneOf } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'
import { SiError } from '../../src/errors.ts'
import { Cluster } from './cluster.ts'
import { AUTO, PREFERRED_CONGESTION_CONTROL, chooseCongestionControl } from './congestion.ts'
import { hasTool, run as run_, runIfMain, stopAllChildren } from './exec.ts'
import { addImage, makeImage, type BenchImage } from './image.ts'
import { DEFAULT_NS_PREFIX, currentNsPrefix, ownNamespaces, setNsPrefix, sweepStaleNamespaces } from './netns.ts'
import { fullPlan, smokePlan, MIB, type Plan, type Scenario } from './plans.ts'
import { rawRace } from './raw.ts'
import { DEFAULT_ROOTLIKE_ENTRIES, ROOTLIKE_CACHE_DIR, makeRootlikeImage } from './rootlike-image.ts'
import { writeReport, type RunResult, type ScenarioResult } from './report.ts'
import { summarise, type TreeSummary } from './tree-check.ts'
import { DEFAULT_LINK_SAMPLE_MS, runTrial, type TrialResult } from './trial.ts'
import { lateStartSeconds } from './metrics.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const DEFAULT_SIZES = [1, 2, 4, 8, 16, 32]
const DEFAULT_ROOTLIKE_SIZES = [1, 8, 16]
/** Scratch space in RAM: targets, staging and the repository of every node live here. */
const SCRATCH_BASE = '/dev/shm'
/**
 * The issue's setting is a 64 MiB image (1 MiB pieces) on 40 Mbit/s links. On a 2-core
 * machine 32 agents at 40 Mbit/s saturate the CPU, so the default is that setting scaled
 * by 1/4 in bytes: 16 MiB on 10 Mbit/s links, the same T* at a quarter of the CPU load.
 * Pieces are 128 KiB, tuned (docs/BENCHMARKS.md, Tuning row 21): 256 KiB, the issue's
 * piece count, took 2-3 s longer at N=32. rsync runs up to N=8 only: it is unicast, so
 * T >= N·F/U_s, and N=32 would take 7 minutes per run.
 */
const BENCH_OPTIONS = {
  plan: option({ flag: 'plan', arg: 'full|smoke', help: 'the whole plan or the 4-node harness check', default: 'full' as 'full' | 'smoke', parse: oneOf(['full', 'smoke'] as const) }),
  out: option({ flag: 'out', arg: 'DIR', help: 'where results and the report go', default: join(ROOT, 'bench'), defaultText: 'bench/', parse: nonEmpty('a directory') }),
  rate: option({ flag: 'rate', arg: 'MBIT', help: 'each link\'s rate, both ways', default: 10, parse: decimal(0.1, 100_000) }),
  imageMib: option({ flag: 'image-mib', arg: 'N', help: 'image size', default: 16, parse: decimal(1, 1_000_000) }),
  pieceKib: option({ flag: 'piece-kib', arg: 'N', help: 'piece size; 0: si-server\'s choice by size', default: 128, parse: integer(0, 65_536) }),
  sizes: listOption({ flag: 'sizes', arg: '1,2,4,...', help: 'node counts of the scale scenarios (default 1,2,4,8,16,32)', parseItem: integer(1, 1024) }),
  unicastMax: option({ flag: 'unicast-max', arg: 'N', help: 'largest N for HTTP unicast', default: 32, parse: integer(0, 1024) }),
  rsyncMax: option({ flag: 'rsync-max', arg: 'N', help: 'largest N for rsync', default: 8, parse: integer(0, 1024) }),
  stagger: option({ flag: 'stagger', arg: 'S', help: 'seconds between node starts in the staggered scenario', default: 1, parse: decimal(0, 3600) }),
  rootlikeEntries: option({ flag: 'rootlike-entries', arg: 'N', help: 'entries of the root-like image\'s tree (its large libraries left out: scripts/bench/rootlike-image.ts)', default: DEFAULT_ROOTLIKE_ENTRIES, parse: integer(100, 10_000_000) }),
  rootlikeSizes: listOption({ flag: 'rootlike-sizes', arg: '1,8,...', help: `node counts of the root-like image's scenarios (default ${DEFAULT_ROOTLIKE_SIZES.join(',')})`, parseItem: integer(1, 1024) }),
  rootlikeCache: option({ flag: 'rootlike-cache', arg: 'DIR', help: 'where generated root-like trees are kept between runs', default: ROOTLIKE_CACHE_DIR, parse: nonEmpty('a directory') }),
  rawMib: option({ flag: 'raw-mib', arg: 'N', help: 'image of the loopback race, 0 to skip', default: 1024, parse: integer(0, 1_000_000) }),
  tcpCc: option({ flag: 'tcp-cc', arg: 'NAME|auto', help: `TCP congestion control on every emulated host; auto: ${PREFERRED_CONGESTION_CONTROL} where allowed, else the machine's own`, default: AUTO, parse: nonEmpty('a congestion control name') }),
  only: listOption({ flag: 'only', arg: 'GROUPS', help: 'scale,rootlike,cpufair,hetero,loss,stagger,leave,raw', parseItem: nonEmpty('a scenario group') }),
  transports: listOption({ flag: 'transports', arg: 'IDS', help: 'bt,http,multicast,aria2,rsync,auto', parseItem: nonEmpty('a transport') }),
  linkSampleMs: option({ flag: 'link-sample-ms', arg: 'MS', help: 'how often the link counters are read (the timelines\' resolution)', default: DEFAULT_LINK_SAMPLE_MS, parse: integer(50, 10_000) }),
  merge: switchOption({ flag: 'merge', help: 'keep earlier results in OUT, replacing only the trials re-run' }),
  reportOnly: switchOption({ flag: 'report-only', help: 'rewrite OUT/REPORT.md from OUT/results, running nothing' }),
  agentBin: option({ flag: 'agent-bin', arg: 'FILE', help: 'run this si-agent instead of dist/si-agent', parse: nonEmpty('a file') }),
  serverBin: option({ flag: 'server-bin', arg: 'FILE', help: 'run this si-server instead of dist/si-server', parse: nonEmpty('a file') }),
  nsPrefix: option({ flag: 'ns-prefix', arg: 'NAME', help: 'prefix of the network namespaces this run makes (one per person sharing the machine); only dead runs of the same prefix are swept', default: DEFAULT_NS_PREFIX, parse: nsPrefixName })
}

/** Namespace names: letters, digits and dashes, short enough to leave room for the pid and host. */
function nsPrefixName (text: string): string {
  if (!/^[a-z][a-z0-9-]{0,11}$/.test(text)) throw new SiError('ERR_INVALID_ARGUMENT', `--ns-prefix must be 1-12 lower-case letters, digits or dashes, starting with a letter: ${JSON.stringify(text)}`)
  return text
}
type BenchOptions = Values<typeof BENCH_OPTIONS>

const USAGE = commandHelp(['node --import tsx scripts/bench/run.ts [options]   (as root; make bench runs it)'], BENCH_OPTIONS, {
  intro: `Builds emulated clusters, runs every transport of every scenario, and writes
OUT/results/*.json and OUT/REPORT.md with SVG figures.`
})

function log (line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

export async function checkPrerequisites (): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root: network namespaces need CAP_NET_ADMIN'
  for (const tool of ['ip', 'tc', 'curl']) if (!(await hasTool(tool))) return `${tool} is missing`
  return undefined
}

function buildPlan (o: BenchOptions): Plan {
  if (o.plan === 'smoke') return smokePlan()
  const plan = fullPlan({
    rateMbit: o.rate,
    imageMib: o.imageMib,
    pieceKib: o.pieceKib > 0 ? o.pieceKib : undefined,
    sizes: o.sizes.length > 0 ? o.sizes : DEFAULT_SIZES,
    unicastMaxNodes: o.unicastMax,
    rsyncMaxNodes: o.rsyncMax,
    staggerSeconds: o.stagger,
    rawMib: o.rawMib,
    rootlikeSizes: o.rootlikeSizes.length > 0 ? o.rootlikeSizes : DEFAULT_ROOTLIKE_SIZES
  })
  const only = o.only.length === 0 ? undefined : new Set(o.only)
  const transports = o.transports.length === 0 ? undefined : new Set(o.transports)
  plan.scenarios = plan.scenarios
    .filter(s => only === undefined || only.has(s.group))
    .map(s => ({ ...s, transports: s.transports.filter(t => transports === undefined || (transports.has(t.id) || transports.has(t.id.replace(/-.*/, '')))) }))
    .filter(s => s.transports.length > 0)
  if (only !== undefined && !only.has('raw')) plan.rawBytes = 0
  return plan
}

interface BenchEnv { image: BenchImage; tree: TreeSummary; scratch: string; agentBin: string; serverBin: string; repo: string; tcpCongestion: string; linkSampleMs: number; rootlike: { entries: number; cacheDir: string; pieceLength?: number } }
interface ScenarioImage { image: BenchImage; tree: TreeSummary; repo: string }

/**
 * The plan's image, the same tree packed with the scenario's own piece length, or the
 * root-like image (each in a repository of its own, made once per run).
 */
async function imageFor (s: Scenario, env: BenchEnv): Promise<ScenarioImage> {
  if (s.image === 'rootlike') {
    if (rootlikeImage === undefined) {
      const repo = `${env.repo}-rootlike`
      log(`making the root-like image (${env.rootlike.entries} entries, tree cached in ${env.rootlike.cacheDir})`)
      const made = await makeRootlikeImage({ serverBin: env.serverBin, repo, workDir: env.scratch, entries: env.rootlike.entries, cacheDir: env.rootlike.cacheDir, pieceLength: s.pieceLength ?? env.rootlike.pieceLength })
      log(`root-like image ${made.image.ref}: ${made.image.size} bytes, piece ${made.image.pieceLength}, ${made.image.entries} entries`)
      rootlikeImage = { image: made.image, tree: made.tree, repo }
    }
    return rootlikeImage
  }
  if (s.pieceLength === undefined || s.pieceLength === env.image.pieceLength) return { image: env.image, tree: env.tree, repo: env.repo }
  const repo = `${env.repo}-piece${s.pieceLength}`
  const made = imagesByPiece.get(s.pieceLength) ?? await addImage(env.serverBin, repo, env.image.treeDir, s.pieceLength)
  imagesByPiece.set(s.pieceLength, made)
  return { image: made, tree: env.tree, repo }
}
const imagesByPiece = new Map<number, BenchImage>()
let rootlikeImage: ScenarioImage | undefined

async function runScenario (s: Scenario, index: number, env: BenchEnv): Promise<ScenarioResult> {
  const { image, tree, repo } = await imageFor(s, env)
  const result: ScenarioResult = {
    id: s.id, group: s.group, title: s.title, nodes: s.nodes, rateMbit: s.server.rateMbit, staggerSeconds: s.staggerSeconds, pieceLength: image.pieceLength,
    image: { kind: s.image ?? 'one-file', bytes: image.size, entries: image.entries }, tcpCongestion: env.tcpCongestion, namespaces: [], trials: []
  }
  log(`${s.id}: building a cluster of ${s.nodes} nodes`)
  const cluster = await Cluster.create({ tag: `s${index}`, server: s.server, nodes: Array.from({ length: s.nodes }, (_, i) => s.nodeLink(i)), tcpCongestion: env.tcpCongestion })
  current = cluster
  result.namespaces = cluster.namespaces
  try {
    for (const transport of s.transports) {
      const missing = await transport.unavailable()
      if (missing !== undefined) { log(`${s.id}: skipping ${transport.id}: ${missing}`); continue }
      log(`${s.id}: ${transport.label}`)
      const runOnce = async (): Promise<TrialResult> => await runTrial({
        cluster, image, imageTree: tree, transport, agentBin: env.agentBin, serverBin: env.serverBin, repo,
        workDir: join(env.scratch, 'trial'), staggerSeconds: s.staggerSeconds, startAt: s.startAt, linkSampleMs: env.linkSampleMs, log
      })
      let trial = await runOnce()
      // A transfer that began late timed a lost negotiation (udpcast's), not the transport:
      // one more run, and the report says so. A second late start is kept, and flagged.
      const late = lateStartSeconds(trial)
      if (late !== undefined) {
        log(`${s.id}: ${transport.id}: the transfer began only at ${late.toFixed(1)} s (T=${trial.T ?? 'failed'} s); running it once more`)
        const first = trial
        trial = await runOnce()
        trial.notes.push(`run twice: the first run's transfer began only at ${late.toFixed(1)} s (T=${first.T ?? 'failed'} s)`)
      }
      result.trials.push(trial)
      log(`${s.id}: ${transport.id}: T=${trial.T ?? 'failed'} s (T*=${trial.tStar} s), server ${(trial.serverBytes / image.size).toFixed(2)} x F, CPU ${Math.round(trial.cpuMean * 100)}% mean ${Math.round(trial.cpuPeak * 100)}% peak${trial.failures > 0 ? `, ${trial.failures} failed: ${trial.nodeResults.find(n => !n.ok)?.error ?? ''}` : ''}${trial.notes.length > 0 ? `; ${trial.notes.join('; ')}` : ''}`)
    }
  } finally {
    current = undefined
    await cluster.destroy()
  }
  return result
}

const GROUP_ORDER = ['scale', 'rootlike', 'cpufair', 'hetero', 'loss', 'stagger', 'leave']

async function readScenario (file: string): Promise<ScenarioResult | undefined> {
  try { return JSON.parse(await readFile(file, 'utf8')) as ScenarioResult } catch { return undefined }
}

/** Every scenario result in the directory, in the report's order. */
async function readAllScenarios (dir: string): Promise<ScenarioResult[]> {
  const names = (await readdir(dir)).filter(f => f.endsWith('.json') && f !== 'run.json' && f !== 'raw.json')
  const all = (await Promise.all(names.map(f => readScenario(join(dir, f))))).filter((s): s is ScenarioResult => s?.group !== undefined)
  return all.sort((a, b) => GROUP_ORDER.indexOf(a.group) - GROUP_ORDER.indexOf(b.group) || a.nodes - b.nodes)
}

/** The earlier result with the trials just re-run replaced (or added). */
function mergeTrials (old: ScenarioResult | undefined, fresh: ScenarioResult): ScenarioResult {
  if (old === undefined) return fresh
  const trials = old.trials.map(t => fresh.trials.find(f => f.transport === t.transport) ?? t)
  for (const f of fresh.trials) if (!trials.includes(f)) trials.push(f)
  return { ...fresh, trials }
}

/** REPORT.md again from the results on disk (after a --merge, or a change to the report). */
async function reportOnly (outDir: string): Promise<number> {
  const dir = join(outDir, 'results')
  const meta = JSON.parse(await readFile(join(dir, 'run.json'), 'utf8')) as RunResult
  let raw: RunResult['raw']
  try { raw = JSON.parse(await readFile(join(dir, 'raw.json'), 'utf8')) as RunResult['raw'] } catch { raw = undefined }
  const files = await writeReport(outDir, { ...meta, scenarios: await readAllScenarios(dir), raw })
  log(`wrote ${files.length} files under ${outDir}`)
  return 0
}

let current: Cluster | undefined
let scratchDir: string | undefined

/**
 * Ctrl-C or a kill: stop every child, remove the cluster and the scratch space, then exit.
 * `state` says what exists at the moment of the signal.
 */
export function installSignalCleanup (state: () => { cluster?: Cluster; scratch?: string }, say: (line: string) => void = log): void {
  let cleaning = false
  const onSignal = (sig: NodeJS.Signals): void => {
    if (cleaning) return
    cleaning = true
    say(`${sig}: cleaning up`)
    void (async () => {
      const { cluster, scratch } = state()
      await stopAllChildren()
      await cluster?.destroy()
      for (const ns of await ownNamespaces()) await import('./netns.ts').then(m => m.deleteNamespace(ns))
      if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
      process.exit(130)
    })()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

export async function main (argv: string[]): Promise<number> {
  const { values: args, positional, help } = readCommandLine(argv, BENCH_OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  if (args.reportOnly) return await reportOnly(resolve(args.out))
  const problem = await checkPrerequisites()
  if (problem !== undefined) { log(`cannot run: ${problem}`); return 2 }
  const congestion = await chooseCongestionControl(args.tcpCc)
  if ('problem' in congestion) { log(`cannot run: ${congestion.problem}`); return 2 }
  if (congestion.note !== undefined) log(congestion.note)
  const tcpCongestion = congestion.name
  setNsPrefix(args.nsPrefix)
  const plan = buildPlan(args)
  const outDir = resolve(args.out)
  installSignalCleanup(() => ({ cluster: current, scratch: scratchDir }))
  const swept = await sweepStaleNamespaces()
  if (swept.length > 0) log(`removed ${swept.length} stale namespaces of dead runs (${currentNsPrefix()}*)`)

  const scratch = join(SCRATCH_BASE, `${args.nsPrefix}${process.pid}`)
  scratchDir = scratch
  const startedAt = new Date().toISOString()
  try {
    await mkdir(join(scratch, 'bin'), { recursive: true })
    // A snapshot: other work may rebuild dist/ while the benchmark runs.
    const agentBin = join(scratch, 'bin', 'si-agent')
    const serverBin = join(scratch, 'bin', 'si-server')
    for (const [from, to] of [['si-agent', agentBin], ['si-server', serverBin]]) {
      // --agent-bin, --server-bin: experimental builds, to measure a proposed change side by side.
      const override = from === 'si-agent' ? args.agentBin : args.serverBin
      const src = override !== undefined ? resolve(override) : join(ROOT, 'dist', from)
      if (!existsSync(src)) throw new SiError('ERR_BENCH', `${src} is missing: run make build first`)
      await copyFile(src, to)
    }
    const repo = join(scratch, 'repo')
    log(`${plan.name}: making a ${plan.imageBytes / MIB} MiB image`)
    const image = await makeImage(serverBin, repo, join(scratch, 'tree'), plan.imageBytes, plan.pieceLength)
    const tree = await summarise(image.treeDir)
    log(`image ${image.ref}: ${image.size} bytes, piece ${image.pieceLength}, ${image.entries} entries`)

    // Which code was measured: the swarm changes often, and results must say of which version.
    const commit = (await run_('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { allowFail: true })).trim()
    const dirty = (await run_('git', ['-C', ROOT, 'status', '--porcelain', 'src'], { allowFail: true })).split('\n').filter(l => l !== '').length
    const run: RunResult = {
      plan: plan.name, startedAt, source: { commit, dirtySrcFiles: dirty, agentBin: args.agentBin ?? 'dist/si-agent', serverBin: args.serverBin ?? 'dist/si-server' }, host: { cpus: cpus().length, kernel: release(), tcpCongestion }, imageBytes: image.size, pieceLength: image.pieceLength,
      rateMbit: plan.rateMbit, scenarios: [], cleanup: { namespacesLeft: [] },
      rerun: args.merge ? plan.scenarios.map(s => `${s.id} (${s.transports.map(t => t.id).join(', ')})`) : undefined
    }
    await mkdir(join(outDir, 'results'), { recursive: true })
    const resultsDir = join(outDir, 'results')
    for (const [i, s] of plan.scenarios.entries()) {
      let result = await runScenario(s, i, { image, tree, scratch, agentBin, serverBin, repo, tcpCongestion, linkSampleMs: args.linkSampleMs, rootlike: { entries: args.rootlikeEntries, cacheDir: args.rootlikeCache, pieceLength: plan.pieceLength } })
      if (args.merge) result = mergeTrials(await readScenario(join(resultsDir, `${s.id}.json`)), result)
      await writeFile(join(resultsDir, `${s.id}.json`), JSON.stringify(result) + '\n')
    }
    run.scenarios = args.merge ? await readAllScenarios(resultsDir) : await Promise.all(plan.scenarios.map(async s => (await readScenario(join(resultsDir, `${s.id}.json`)))!))
    if (plan.rawBytes === 0 && args.merge) {
      try { run.raw = JSON.parse(await readFile(join(resultsDir, 'raw.json'), 'utf8')) as RunResult['raw'] } catch { /* none yet */ }
    }
    if (plan.rawBytes > 0) {
      log(`raw: making a ${plan.rawBytes / MIB} MiB image`)
      const rawRepo = join(scratch, 'raw-repo')
      const rawImage = await makeImage(serverBin, rawRepo, join(scratch, 'raw-tree'), plan.rawBytes)
      await rm(rawImage.treeDir, { recursive: true, force: true })
      run.raw = await rawRace(agentBin, serverBin, rawRepo, rawImage, join(scratch, 'raw'), log)
      await writeFile(join(outDir, 'results', 'raw.json'), JSON.stringify(run.raw, null, 1) + '\n')
      for (const r of run.raw) log(`raw: ${r.label}: ${(r.bytes / 1e6 / r.downloadSeconds).toFixed(1)} MB/s${r.error !== undefined ? ` (${r.error})` : ''}`)
    }
    run.cleanup.namespacesLeft = await ownNamespaces()
    await writeFile(join(outDir, 'results', 'run.json'), JSON.stringify({ ...run, scenarios: run.scenarios.map(s => s.id) }, null, 1) + '\n')
    const files = await writeReport(outDir, run)
    log(`wrote ${files.length} files under ${outDir}`)
    return run.cleanup.namespacesLeft.length === 0 ? 0 : 1
  } finally {
    await stopAllChildren()
    await rm(scratch, { recursive: true, force: true })
  }
}

runIfMain(import.meta.url, main, log)
