// What one node's install costs on a root-like image, over loopback: packing
// (`si-server image add` against `tar -c` of the same tree), then the agent's whole
// install (`si-agent deploy`, download and extraction, against GNU tar extracting the
// same tarball on the same disk), with the agent's CPU time and peak memory. The
// network is not what is measured here; the file system work is.
//   node --import tsx scripts/bench/install-time.ts [options]
import { spawn } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { option } from '../../src/config/options.ts'
import { integer, nonEmpty } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'
import { SiError, describeError } from '../../src/errors.ts'
import { ensureRootlikeTree, DEFAULT_ENTRIES } from './rootlike-tree.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const DEFAULT_WORK = '/var/tmp/si-install-time'
const DEFAULT_CACHE = '/var/cache/swarmimager-bench'
const TIME = '/usr/bin/time'
const STEP_TIMEOUT_MS = 30 * 60_000
const SERVER_READY_MS = 30_000
/** GNU tar with every attribute our agent restores, as the issue's comparison names it. */
const GNU_TAR_EXTRACT = ['--xattrs', '--xattrs-include=*', '--acls', '-S', '--numeric-owner', '-xpf']

const OPTIONS = {
  tree: option({ flag: 'tree', arg: 'DIR', help: 'the tree to measure', defaultText: 'a generated root-like tree', parse: nonEmpty('a directory') }),
  entries: option({ flag: 'entries', arg: 'N', help: 'entries of the generated tree', default: DEFAULT_ENTRIES, parse: integer(100, 10_000_000) }),
  runs: option({ flag: 'runs', arg: 'N', help: 'installs per tool, alternating', default: 2, parse: integer(1, 20) }),
  agentBin: option({ flag: 'agent-bin', arg: 'FILE', help: 'si-agent to measure', default: join(ROOT, 'dist/si-agent'), defaultText: 'dist/si-agent', parse: nonEmpty('a file') }),
  serverBin: option({ flag: 'server-bin', arg: 'FILE', help: 'si-server to measure', default: join(ROOT, 'dist/si-server'), defaultText: 'dist/si-server', parse: nonEmpty('a file') }),
  work: option({ flag: 'work', arg: 'DIR', help: 'scratch space on the disk under test', default: DEFAULT_WORK, parse: nonEmpty('a directory') }),
  out: option({ flag: 'out', arg: 'FILE', help: 'JSON results', parse: nonEmpty('a file') }),
  label: option({ flag: 'label', arg: 'TEXT', help: 'names this run in the output', default: '', parse: (t: string) => t })
}

const USAGE = commandHelp(['node --import tsx scripts/bench/install-time.ts [options]'], OPTIONS, {
  intro: `Packs a tree into an image, installs it with one agent over loopback, and compares both
with GNU tar on the same tree and tarball. Prints a table and writes JSON.`
})

interface Timed { seconds: number; cpuSeconds: number; maxRssBytes: number; stdout: string; stderr: string }

/** Runs a command under GNU time: wall time, CPU (user+system) and peak RSS of it and its children. */
async function timed (cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<Timed> {
  const started = process.hrtime.bigint()
  return await new Promise((resolvePromise, reject) => {
    const child = spawn(TIME, ['-f', '@@time %U %S %M', cmd, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS)
    child.once('error', err => { clearTimeout(timer); reject(new SiError('ERR_BENCH', `cannot run ${cmd}: ${err.message}`)) })
    child.once('close', code => {
      clearTimeout(timer)
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      const m = /@@time ([\d.]+) ([\d.]+) (\d+)/.exec(stderr)
      if (code !== 0 || m === null) {
        reject(new SiError('ERR_BENCH', `${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' / ')}`))
        return
      }
      resolvePromise({ seconds, cpuSeconds: Number(m[1]) + Number(m[2]), maxRssBytes: Number(m[3]) * 1024, stdout, stderr })
    })
  })
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(r => server.listen(0, '127.0.0.1', () => r()))
  const address = server.address()
  await new Promise<void>(r => server.close(() => r()))
  return typeof address === 'object' && address !== null ? address.port : 0
}

/** `si-server serve` on loopback; resolves once it says it is serving. */
async function startServer (serverBin: string, repo: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const [httpPort, peerPort] = [await freePort(), await freePort()]
  const child = spawn(serverBin, ['serve', '--repo', repo, '--listen', `127.0.0.1:${httpPort}`, '--peer-listen', `127.0.0.1:${peerPort}`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const deadline = Date.now() + SERVER_READY_MS
  while (!/serving \d+ image/.test(stderr)) {
    if (child.exitCode !== null || Date.now() > deadline) { child.kill('SIGKILL'); throw new SiError('ERR_BENCH', `si-server did not start: ${stderr.trim()}`) }
    await new Promise(r => setTimeout(r, 50))
  }
  const exited = new Promise(r => child.once('close', r))
  return { url: `http://127.0.0.1:${httpPort}`, stop: async () => { child.kill('SIGTERM'); await exited } }
}

interface AgentRun { totalSeconds: number; downloadSeconds: number; cpuSeconds: number; peakRssBytes: number }

/** Removes what an earlier run left and writes back every dirty page, so that no run pays for another's writes. */
async function clearAndSync (target: string): Promise<void> {
  rmSync(target, { recursive: true, force: true })
  await timed('sync', [])
}

async function installWithAgent (agentBin: string, url: string, ref: string, target: string): Promise<AgentRun> {
  await clearAndSync(target)
  const t = await timed(agentBin, ['deploy', '--server', url, '--image', ref, '--target', target, '--seed-wait', 'none', '--no-report', '--json'])
  const done = t.stdout.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>).find(e => e.type === 'done')
  if (done === undefined) throw new SiError('ERR_BENCH', 'the agent printed no done event')
  return { totalSeconds: t.seconds, downloadSeconds: Number(done.downloadSeconds), cpuSeconds: t.cpuSeconds, peakRssBytes: t.maxRssBytes }
}

async function extractWithTar (tarball: string, target: string): Promise<Timed> {
  await clearAndSync(target)
  mkdirSync(target, { recursive: true })
  return await timed('tar', [...GNU_TAR_EXTRACT, tarball, '-C', target])
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const f1 = (x: number): string => x.toFixed(1)
const f2 = (x: number): string => x.toFixed(2)

async function main (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  const agentBin = resolve(o.agentBin)
  const serverBin = resolve(o.serverBin)
  const { runs, work } = o
  let tree = o.tree
  if (tree === undefined) {
    tree = join(DEFAULT_CACHE, `rootlike-${o.entries}`)
    process.stderr.write(`install-time: generating (or reusing) ${tree}\n`)
    const made = ensureRootlikeTree(tree, { entries: o.entries })
    process.stderr.write(`install-time: ${made.entries} entries, ${f1(made.bytes / 1e6)} MB\n`)
  }
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  try {
    const repo = join(work, 'repo')
    process.stderr.write('install-time: packing with si-server image add and with tar -c\n')
    const pack = await timed(serverBin, ['image', 'add', 'measured', '--from', tree, '--repo', repo])
    const gnuPack = await timed('tar', ['--xattrs', '--xattrs-include=*', '--acls', '-S', '--numeric-owner', '-cpf', join(work, 'gnu.tar'), '-C', tree, '.'])
    const ref = pack.stdout.trim()
    const list = JSON.parse((await timed(serverBin, ['image', 'list', '--repo', repo, '--json'])).stdout) as Array<{ tarPath: string; size: number; entries: number }>
    const image = list[0]
    const server = await startServer(serverBin, repo)
    const agent: AgentRun[] = []
    const tar: Timed[] = []
    try {
      for (let i = 0; i < runs; i++) {
        process.stderr.write(`install-time: run ${i + 1} of ${runs}\n`)
        agent.push(await installWithAgent(agentBin, server.url, ref, join(work, 'target-agent')))
        tar.push(await extractWithTar(image.tarPath, join(work, 'target-tar')))
      }
    } finally {
      await server.stop()
    }
    const result = {
      label: o.label,
      tree,
      entries: image.entries,
      tarBytes: image.size,
      packSeconds: pack.seconds,
      gnuPackSeconds: gnuPack.seconds,
      agent,
      gnuTarSeconds: tar.map(t => t.seconds),
      median: {
        installSeconds: median(agent.map(a => a.totalSeconds)),
        downloadSeconds: median(agent.map(a => a.downloadSeconds)),
        agentCpuSeconds: median(agent.map(a => a.cpuSeconds)),
        agentPeakRssBytes: Math.max(...agent.map(a => a.peakRssBytes)),
        gnuTarSeconds: median(tar.map(t => t.seconds))
      }
    }
    const m = result.median
    process.stdout.write([
      `tree ${tree}: ${image.entries} entries, tar ${f1(image.size / 1e6)} MB${result.label !== '' ? ` (${result.label})` : ''}`,
      `pack:    si-server image add ${f2(pack.seconds)} s, tar -c ${f2(gnuPack.seconds)} s (ratio ${f2(pack.seconds / gnuPack.seconds)})`,
      `install: si-agent ${f2(m.installSeconds)} s (download done at ${f2(m.downloadSeconds)} s, ${f2(m.agentCpuSeconds)} CPU-s, peak RSS ${f1(m.agentPeakRssBytes / 1048576)} MiB); GNU tar -x ${f2(m.gnuTarSeconds)} s; ratio to max(download, tar) ${f2(m.installSeconds / Math.max(m.downloadSeconds, m.gnuTarSeconds))}`,
      ''
    ].join('\n'))
    if (o.out !== undefined) writeFileSync(o.out, JSON.stringify(result, null, 2) + '\n')
    return 0
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`install-time: error: ${describeError(err)}\n`)
  process.exitCode = 1
})
