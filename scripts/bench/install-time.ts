// What one node's install costs on a root-like image, over loopback: packing
// (`si-server image add` against `tar -c` of the same tree, and with the default zstd
// compression against `tar -c | zstd -3`), then the agent's whole
// install (`si-agent deploy`, download and extraction, against GNU tar extracting the
// same tarball on the same disk), with the agent's CPU time and peak memory. The
// network is not what is measured here; the file system work is. One run measures
// several trees (by default a generated root-like tree, a debootstrap minbase and this
// machine's /usr) and writes the figures as JSON and as a Markdown table.
//   node --import tsx scripts/bench/install-time.ts [options]
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { loadavg } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { option } from '../../src/config/options.ts'
import { integer, nonEmpty } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'
import { SiError, describeError } from '../../src/errors.ts'
import { ensureRootlikeTree, DEFAULT_ENTRIES } from './rootlike-tree.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const DEFAULT_WORK = '/var/tmp/si-install-time'
const DEFAULT_OUT = join(ROOT, 'bench/results/install-time.json')
/** The trees --trees names: a generated root-like tree, the tests' cached minbase, /usr. */
const NAMED_TREES: Record<string, string | undefined> = {
  rootlike: undefined,
  minbase: '/var/cache/swarmimager-test/bookworm-minbase',
  usr: '/usr'
}
const DEFAULT_CACHE = '/var/cache/swarmimager-bench'
const TIME = '/usr/bin/time'
const STEP_TIMEOUT_MS = 30 * 60_000
const SERVER_READY_MS = 30_000
/** GNU tar with every attribute our agent restores, as the issue's comparison names it. */
const GNU_TAR_EXTRACT = ['--xattrs', '--xattrs-include=*', '--acls', '-S', '--numeric-owner', '-xpf']
/** The same attributes when packing. */
const GNU_TAR_CREATE = ['--xattrs', '--xattrs-include=*', '--acls', '-S', '--numeric-owner', '-cpf']
/** Our default compression's level (src/image/compression.ts), as the zstd command takes it. */
const ZSTD_LEVEL_FLAG = '-3'

const OPTIONS = {
  tree: option({ flag: 'tree', arg: 'DIR', help: 'measure this tree only (instead of --trees)', parse: nonEmpty('a directory') }),
  trees: option({ flag: 'trees', arg: 'LIST', help: 'trees to measure, comma-separated: rootlike (generated), minbase (debootstrap), usr (/usr), or directories', default: 'rootlike,minbase,usr', parse: nonEmpty('a list of trees') }),
  entries: option({ flag: 'entries', arg: 'N', help: 'entries of the generated tree', default: DEFAULT_ENTRIES, parse: integer(100, 10_000_000) }),
  runs: option({ flag: 'runs', arg: 'N', help: 'installs per tool, alternating', default: 2, parse: integer(1, 20) }),
  agentBin: option({ flag: 'agent-bin', arg: 'FILE', help: 'si-agent to measure', default: join(ROOT, 'dist/si-agent'), defaultText: 'dist/si-agent', parse: nonEmpty('a file') }),
  serverBin: option({ flag: 'server-bin', arg: 'FILE', help: 'si-server to measure', default: join(ROOT, 'dist/si-server'), defaultText: 'dist/si-server', parse: nonEmpty('a file') }),
  work: option({ flag: 'work', arg: 'DIR', help: 'scratch space on the disk under test', default: DEFAULT_WORK, parse: nonEmpty('a directory') }),
  out: option({ flag: 'out', arg: 'FILE', help: 'JSON results (the Markdown table goes beside it, as .md)', default: DEFAULT_OUT, defaultText: 'bench/results/install-time.json', parse: nonEmpty('a file') }),
  label: option({ flag: 'label', arg: 'TEXT', help: 'names this run in the output', default: '', parse: (t: string) => t })
}

const USAGE = commandHelp(['node --import tsx scripts/bench/install-time.ts [options]'], OPTIONS, {
  intro: `Packs each tree into an image, uncompressed and with the default zstd, installs the
uncompressed one with one agent over loopback, and compares each step with GNU tar on the
same tree and tarball (tar -c, tar -c | zstd -3, tar -x). Prints a table and writes JSON
and Markdown.`
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

/** The middle value; of an even count, the mean of the two middle ones. */
function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}
const f1 = (x: number): string => x.toFixed(1)
const f2 = (x: number): string => x.toFixed(2)

interface TreeResult {
  label: string
  tree: string
  entries: number
  tarBytes: number
  /** `image add --compression none` against `tar -c`. */
  packSeconds: number
  gnuPackSeconds: number
  /** `image add` with its default compression (zstd) against `tar -c | zstd -3`. */
  packZstdSeconds: number
  gnuPackZstdSeconds: number
  zstdBytes: number
  agent: AgentRun[]
  gnuTarSeconds: number[]
  median: { installSeconds: number; downloadSeconds: number; agentCpuSeconds: number; agentPeakRssBytes: number; gnuTarSeconds: number }
}

/** Packs `tree` both ways, then installs it `runs` times with the agent and with GNU tar, alternating. */
async function measureTree (tree: string, label: string, o: { runs: number; work: string; agentBin: string; serverBin: string }): Promise<TreeResult> {
  const { runs, work, agentBin, serverBin } = o
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  try {
    const repo = join(work, 'repo')
    process.stderr.write(`install-time: ${label}: packing with si-server image add and with tar -c (and both with zstd)\n`)
    // Whoever reads the tree first would pay for reading it from the disk: nobody does.
    await timed('bash', ['-c', 'tar -cf - -C "$1" . | cat > /dev/null', 'bash', tree])
    const gnuTar = join(work, 'gnu.tar')
    await clearAndSync(gnuTar)
    const gnuPack = await timed('tar', [...GNU_TAR_CREATE, gnuTar, '-C', tree, '.'])
    await clearAndSync(gnuTar)
    const pack = await timed(serverBin, ['image', 'add', 'measured', '--from', tree, '--repo', repo, '--compression', 'none'])
    await clearAndSync(`${gnuTar}.zst`)
    // bash runs the command after the output file as given, word for word, into zstd.
    const gnuPackZstd = await timed('bash', ['-o', 'pipefail', '-c', `out="$1"; shift; "$@" | zstd ${ZSTD_LEVEL_FLAG} -q -f -o "$out"`, 'bash', `${gnuTar}.zst`, 'tar', ...GNU_TAR_CREATE, '-', '-C', tree, '.'])
    await clearAndSync(`${gnuTar}.zst`)
    const packZstd = await timed(serverBin, ['image', 'add', 'measured-zstd', '--from', tree, '--repo', repo])
    const ref = pack.stdout.trim()
    const list = JSON.parse((await timed(serverBin, ['image', 'list', '--repo', repo, '--json'])).stdout) as Array<{ name: string; tarPath: string; size: number; entries: number }>
    const image = list.find(v => v.name === 'measured')!
    const zstdImage = list.find(v => v.name === 'measured-zstd')!
    const server = await startServer(serverBin, repo)
    const agent: AgentRun[] = []
    const tar: Timed[] = []
    try {
      for (let i = 0; i < runs; i++) {
        process.stderr.write(`install-time: ${label}: run ${i + 1} of ${runs}\n`)
        agent.push(await installWithAgent(agentBin, server.url, ref, join(work, 'target-agent')))
        rmSync(join(work, 'target-agent'), { recursive: true, force: true })
        tar.push(await extractWithTar(image.tarPath, join(work, 'target-tar')))
        rmSync(join(work, 'target-tar'), { recursive: true, force: true })
      }
    } finally {
      await server.stop()
    }
    return {
      label,
      tree,
      entries: image.entries,
      tarBytes: image.size,
      packSeconds: pack.seconds,
      gnuPackSeconds: gnuPack.seconds,
      packZstdSeconds: packZstd.seconds,
      gnuPackZstdSeconds: gnuPackZstd.seconds,
      zstdBytes: zstdImage.size,
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
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

/** The agent against GNU tar per tree, and packing against tar -c (and tar -c | zstd -3). */
function markdownTable (results: TreeResult[], note: string): string {
  const rows = results.map(r => {
    const m = r.median
    return `| ${r.label} | ${r.entries} | ${f1(r.tarBytes / 1e6)} | ${f2(m.downloadSeconds)} | ${f2(m.installSeconds)} | ${f2(m.gnuTarSeconds)} | ${f2(m.installSeconds / Math.max(m.downloadSeconds, m.gnuTarSeconds))} | ${f1(m.agentCpuSeconds)} | ${f1(m.agentPeakRssBytes / 1048576)} | ${f2(r.packSeconds)} | ${f2(r.gnuPackSeconds)} | ${f2(r.packSeconds / r.gnuPackSeconds)} | ${f1(r.zstdBytes / 1e6)} | ${f2(r.packZstdSeconds)} | ${f2(r.gnuPackZstdSeconds)} | ${f2(r.packZstdSeconds / r.gnuPackZstdSeconds)} |`
  })
  return [
    note,
    '',
    '| tree | entries | tar MB | download s | install s | GNU tar -x s | install / max(download, tar) | agent CPU-s | agent peak RSS MiB | pack s | tar -c s | pack / tar -c | zstd MB | pack zstd s | tar -c \\| zstd -3 s | pack zstd / tar -c \\| zstd |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    ''
  ].join('\n')
}

/** The trees to measure, by name or directory; a named one that is not on this machine is skipped with a word. */
function treesToMeasure (o: { tree?: string; trees: string; entries: number }): Array<{ label: string; dir: string }> {
  if (o.tree !== undefined) return [{ label: o.tree, dir: o.tree }]
  const out: Array<{ label: string; dir: string }> = []
  for (const name of o.trees.split(',').map(t => t.trim()).filter(t => t !== '')) {
    if (name === 'rootlike') {
      const dir = join(DEFAULT_CACHE, `rootlike-${o.entries}`)
      process.stderr.write(`install-time: generating (or reusing) ${dir}\n`)
      const made = ensureRootlikeTree(dir, { entries: o.entries })
      process.stderr.write(`install-time: ${made.entries} entries, ${f1(made.bytes / 1e6)} MB\n`)
      out.push({ label: `rootlike-${o.entries}`, dir })
    } else if (name in NAMED_TREES) {
      const dir = NAMED_TREES[name]!
      if (existsSync(dir)) out.push({ label: name, dir })
      else process.stderr.write(`install-time: skipping ${name}: ${dir} does not exist\n`)
    } else {
      if (!existsSync(name)) throw new SiError('ERR_BENCH', `tree ${name} does not exist (named trees: ${Object.keys(NAMED_TREES).join(', ')})`)
      out.push({ label: name, dir: name })
    }
  }
  return out
}

async function main (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  const settings = { runs: o.runs, work: o.work, agentBin: resolve(o.agentBin), serverBin: resolve(o.serverBin) }
  const results: TreeResult[] = []
  for (const { label, dir } of treesToMeasure(o)) {
    const r = await measureTree(dir, label, settings)
    results.push(r)
    const m = r.median
    process.stdout.write([
      `tree ${r.tree}: ${r.entries} entries, tar ${f1(r.tarBytes / 1e6)} MB`,
      `pack:    si-server image add ${f2(r.packSeconds)} s, tar -c ${f2(r.gnuPackSeconds)} s (ratio ${f2(r.packSeconds / r.gnuPackSeconds)})`,
      `zstd:    si-server image add ${f2(r.packZstdSeconds)} s, tar -c | zstd ${ZSTD_LEVEL_FLAG} ${f2(r.gnuPackZstdSeconds)} s (ratio ${f2(r.packZstdSeconds / r.gnuPackZstdSeconds)}), ${f1(r.zstdBytes / 1e6)} MB`,
      `install: si-agent ${f2(m.installSeconds)} s (download done at ${f2(m.downloadSeconds)} s, ${f2(m.agentCpuSeconds)} CPU-s, peak RSS ${f1(m.agentPeakRssBytes / 1048576)} MiB); GNU tar -x ${f2(m.gnuTarSeconds)} s; ratio to max(download, tar) ${f2(m.installSeconds / Math.max(m.downloadSeconds, m.gnuTarSeconds))}`,
      ''
    ].join('\n'))
  }
  const note = `install-time${o.label !== '' ? ` (${o.label})` : ''}, ${new Date().toISOString()}, ${o.runs} run(s) per tree, medians; load average at the end: ${loadavg().map(l => l.toFixed(2)).join(' ')}`
  mkdirSync(dirname(o.out), { recursive: true })
  writeFileSync(o.out, JSON.stringify({ label: o.label, note, trees: results }, null, 2) + '\n')
  const md = o.out.replace(/\.json$/, '') + '.md'
  writeFileSync(md, markdownTable(results, note))
  process.stdout.write(markdownTable(results, note))
  return 0
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`install-time: error: ${describeError(err)}\n`)
  process.exitCode = 1
})
