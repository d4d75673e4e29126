// `make reliability`: the faults a deployment on a real LAN meets (a server crash, agents
// killed, a link down, loss) and the attacks of a compromised node (attack.ts), each
// injected into a full swarm deployment on an emulated cluster, and a table of what came
// of it: nodes that ended with the verified image, and any node that reported done with
// data that differs from the image (there must be none). Run as root.
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { listOption, option } from '../../src/config/options.ts'
import { decimal, integer, nonEmpty } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'
import { SiError } from '../../src/errors.ts'
import { Cluster } from '../bench/cluster.ts'
import { chooseCongestionControl } from '../bench/congestion.ts'
import { runIfMain, stopAllChildren } from '../bench/exec.ts'
import { makeImage } from '../bench/image.ts'
import { ownNamespaces, sweepStaleNamespaces } from '../bench/netns.ts'
import { checkPrerequisites, installSignalCleanup } from '../bench/run.ts'
import { summarise } from '../bench/tree-check.ts'
import { runTrial, type TrialResult } from '../bench/trial.ts'
import { btTransport } from '../bench/transports/agent.ts'
import { CASES, type ReliabilityCase } from './cases.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SCRATCH_BASE = '/dev/shm'
const MIB = 1024 * 1024

const OPTIONS = {
  nodes: option({ flag: 'nodes', arg: 'N', help: 'nodes in the cluster', default: 16, parse: integer(2, 200) }),
  rate: option({ flag: 'rate', arg: 'MBIT', help: 'each link\'s rate, both ways', default: 10, parse: decimal(0.5, 10_000) }),
  imageMib: option({ flag: 'image-mib', arg: 'N', help: 'image size', default: 24, parse: decimal(1, 100_000) }),
  cases: listOption({ flag: 'cases', arg: 'IDS', help: `cases to run (default all: ${CASES.map(c => c.id).join(',')})`, parseItem: nonEmpty('a case') }),
  out: option({ flag: 'out', arg: 'DIR', help: 'where results.json and REPORT.md go', default: join(ROOT, 'bench', 'reliability'), defaultText: 'bench/reliability/', parse: nonEmpty('a directory') }),
  agentBin: option({ flag: 'agent-bin', arg: 'FILE', help: 'run this si-agent instead of dist/si-agent', parse: nonEmpty('a file') }),
  serverBin: option({ flag: 'server-bin', arg: 'FILE', help: 'run this si-server instead of dist/si-server', parse: nonEmpty('a file') })
}

const USAGE = commandHelp(['node --import tsx scripts/reliability/run.ts [options]   (as root; make reliability runs it)'], OPTIONS, {
  intro: `Deploys an image to an emulated cluster once per case (server killed, agents killed, a link
down, loss; a compromised node lying, flooding the tracker, holding listener slots, flooding
the fleet view; the image removed in use) and prints a table: nodes that ended with the
verified image, and nodes that reported done with data differing from the image.`
})

function log (line: string): void {
  process.stderr.write(`[reliability ${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

interface CaseResult { id: string; title: string; fault: string; passed: boolean; verified: number; nodes: number; differing: number; T: number | null; tStar: number; failures: string[]; notes: string[] }

function summariseTrial (c: ReliabilityCase, trial: TrialResult, imageBytes: number, caseNotes: string[]): CaseResult {
  const differing = trial.nodeResults.filter(n => n.error?.startsWith('target differs') === true).length
  const verdict = c.judge?.(trial)
  const failures = verdict !== undefined ? [] : trial.nodeResults.filter(n => !n.ok).map(n => `${n.name}: ${n.error ?? `exit ${String(n.exit)}`}`)
  const notes = [...(verdict?.notes ?? []), ...caseNotes, ...trial.notes.filter(n => !n.startsWith('waited'))]
  const received = (relaunched: boolean): string => {
    const ratios = trial.nodeResults.filter(n => n.downloaded !== undefined && (n.relaunches !== undefined) === relaunched).map(n => n.downloaded! / imageBytes)
    return ratios.length === 0 ? '—' : `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)} × F`
  }
  notes.push(`payload received per node ${received(false)}`)
  if (trial.nodeResults.some(n => n.relaunches !== undefined)) notes.push(`restarted agents received ${received(true)} after their restart`)
  notes.push(`server sent ${(trial.serverBytes / imageBytes).toFixed(2)} × F`)
  const verified = trial.nodeResults.filter(n => n.ok).length
  const passed = verdict?.passed ?? (verified === trial.nodes && differing === 0)
  return { id: c.id, title: c.title, fault: c.fault, passed, verified, nodes: trial.nodes, differing, T: trial.T, tStar: trial.tStar, failures, notes }
}

export function formatTable (results: CaseResult[]): string {
  const lines = [
    '| case | fault | result | nodes with the verified image | done with differing data | T (s) | T* (s) | notes |',
    '|---|---|---|---|---|---|---|---|'
  ]
  for (const r of results) {
    const notes = [...r.failures.slice(0, 3), ...r.notes].join('; ').replaceAll('|', '/')
    lines.push(`| ${r.title} | ${r.fault} | ${r.passed ? 'pass' : '**FAIL**'} | ${r.verified}/${r.nodes} | ${r.differing} | ${r.T ?? '—'} | ${r.tStar} | ${notes} |`)
  }
  return lines.join('\n') + '\n'
}

let current: Cluster | undefined
let scratchDir: string | undefined

export async function main (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  const unknown = o.cases.filter(id => !CASES.some(c => c.id === id))
  if (unknown.length > 0) throw new SiError('ERR_INVALID_ARGUMENT', `--cases: no case ${unknown.join(', ')}; the cases are ${CASES.map(c => c.id).join(', ')}`)
  const cases = o.cases.length === 0 ? CASES : CASES.filter(c => o.cases.includes(c.id))
  const problem = await checkPrerequisites()
  if (problem !== undefined) { log(`cannot run: ${problem}`); return 2 }
  const congestion = await chooseCongestionControl('auto')
  if ('problem' in congestion) { log(`cannot run: ${congestion.problem}`); return 2 }
  installSignalCleanup(() => ({ cluster: current, scratch: scratchDir }), log)
  const swept = await sweepStaleNamespaces()
  if (swept.length > 0) log(`removed ${swept.length} stale namespaces of dead runs`)

  const scratch = join(SCRATCH_BASE, `sireliability-${process.pid}`)
  scratchDir = scratch
  const results: CaseResult[] = []
  try {
    await mkdir(join(scratch, 'bin'), { recursive: true })
    const bins: Record<string, string> = {}
    for (const [name, override] of [['si-agent', o.agentBin], ['si-server', o.serverBin]] as const) {
      const src = override !== undefined ? resolve(override) : join(ROOT, 'dist', name)
      if (!existsSync(src)) throw new SiError('ERR_BENCH', `${src} is missing: run make build first`)
      bins[name] = join(scratch, 'bin', name)
      await copyFile(src, bins[name]) // a snapshot: dist/ may be rebuilt while this runs
    }
    const repo = join(scratch, 'repo')
    const image = await makeImage(bins['si-server'], repo, join(scratch, 'tree'), o.imageMib * MIB)
    const tree = await summarise(image.treeDir)
    log(`image ${image.ref}: ${image.size} bytes, ${image.entries} entries; ${o.nodes} nodes at ${o.rate} Mbit/s`)
    for (const [index, c] of cases.entries()) {
      const base = { rateMbit: o.rate }
      const link = c.link?.(base) ?? base
      log(`${c.id}: ${c.fault}`)
      const cluster = await Cluster.create({ tag: `r${index}`, server: link, nodes: Array.from({ length: o.nodes }, () => link), tcpCongestion: congestion.name })
      current = cluster
      const caseNotes: string[] = []
      const caseContext = { cluster, imageBytes: image.size, imageRef: image.ref, payload: image.tarPath, repo, serverBin: bins['si-server'], log, note: (line: string) => { caseNotes.push(line) } }
      try {
        const trial = await runTrial({
          cluster, image, imageTree: tree, transport: btTransport('swarm'), agentBin: bins['si-agent'], serverBin: bins['si-server'], repo,
          workDir: join(scratch, 'trial'), staggerSeconds: 0, log,
          during: c.during === undefined ? undefined : async control => { await c.during!(control, caseContext) }
        })
        const result = summariseTrial(c, trial, image.size, caseNotes)
        results.push(result)
        log(`${c.id}: ${result.passed ? 'pass' : 'FAIL'}: ${result.verified}/${result.nodes} verified, ${result.differing} differing, T=${result.T ?? '—'} s${result.failures.length > 0 ? `; ${result.failures.slice(0, 2).join('; ')}` : ''}`)
      } finally {
        current = undefined
        await cluster.destroy()
      }
    }
    const table = formatTable(results)
    process.stdout.write(table)
    const outDir = resolve(o.out)
    await mkdir(outDir, { recursive: true })
    await writeFile(join(outDir, 'results.json'), JSON.stringify({ startedAt: new Date().toISOString(), nodes: o.nodes, rateMbit: o.rate, imageBytes: image.size, cases: results }, null, 1) + '\n')
    await writeFile(join(outDir, 'REPORT.md'), `# Reliability\n\nGenerated by \`make reliability\` (scripts/reliability/run.ts): ${o.nodes} nodes, links ${o.rate} Mbit/s each way, a ${(image.size / 1e6).toFixed(1)} MB image of ${image.entries} entries, si-agent with the swarm (seed-wait swarm). A case passes when every node ends with the verified image, identical to the source tree, and no node reports done with data that differs.\n\n${table}`)
    log(`wrote ${outDir}/REPORT.md and results.json`)
    const left = await ownNamespaces()
    if (left.length > 0) log(`namespaces left behind: ${left.join(', ')}`)
    return results.every(r => r.passed) && left.length === 0 ? 0 : 1
  } finally {
    await stopAllChildren()
    await rm(scratch, { recursive: true, force: true })
  }
}

runIfMain(import.meta.url, main, log)
