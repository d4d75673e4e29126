// `make demo`: one image server and several nodes on this machine, installing a sample
// image at once through the swarm, with a live view and a verdict. The server's upload
// is capped so that what the swarm saves is visible: the server sends about one copy,
// the nodes pass the rest among themselves. Everything started here is stopped and
// every file written is removed, on success, on failure and on Ctrl-C.
import { access, constants, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SiError, describeError, isSiError } from '../src/errors.ts'
import { nodeName, startAgent, type AgentRun, type NodeState } from './demo/agents.ts'
import { LiveView } from './demo/live-view.ts'
import { parseDemoOptions, USAGE, type DemoOptions } from './demo/options.ts'
import { ChildProcesses, settlesWithin } from './demo/processes.ts'
import { makeSampleImage } from './demo/sample-image.ts'
import { addImage, fetchImageSize, fetchStatus, signingKey, startServer } from './demo/server.ts'
import { buildSummary, formatSummary } from './demo/summary.ts'
import { formatMB } from './demo/units.ts'
import { verifyTargets, type Verification } from './demo/verify-targets.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const AGENT_EXE = join(ROOT, 'dist', 'si-agent')
const SERVER_EXE = join(ROOT, 'dist', 'si-server')
const IMAGE_NAME = 'demo'
const WORK_DIR_PREFIX = 'si-demo-'
const STATUS_POLL_MS = 1_000
/** Forty hex digits are noise in a one-line account of the image. */
const INFO_HASH_CLAUSE = /, info hash [0-9a-f]{40}/
const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_USAGE = 2
const SIGNAL_EXIT: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 }

const out = process.stdout
const say = (line: string): void => { out.write(line + '\n') }

async function main (argv: string[]): Promise<number> {
  let opts: DemoOptions
  try {
    opts = parseDemoOptions(argv)
  } catch (err) {
    process.stderr.write(`demo: ${describeError(err)}\n${USAGE}`)
    return EXIT_USAGE
  }
  if (opts.help) { out.write(USAGE); return EXIT_OK }
  for (const exe of [AGENT_EXE, SERVER_EXE]) {
    try { await access(exe, constants.X_OK) } catch {
      process.stderr.write(`demo: ${exe} is missing: run make build first (make demo does)\n`)
      return EXIT_USAGE
    }
  }

  // A terminal closed or a pipe gone (Ctrl-C on `make demo | less`, a hung-up ssh) makes
  // writes fail; that must not stop the cleanup below, which matters more than any output.
  out.on('error', () => {})
  process.stderr.on('error', () => {})

  const abort = new AbortController()
  let interruptedBy: string | undefined
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interruptedBy !== undefined) return // already stopping; cleanup is bounded
    interruptedBy = signal
    abort.abort(new SiError('ERR_ABORTED', `interrupted by ${signal}`))
  }
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
  for (const s of signals) process.on(s, onSignal)

  const children = new ChildProcesses()
  const workDir = await mkdtemp(join(tmpdir(), WORK_DIR_PREFIX))
  const views: LiveView[] = []
  try {
    say(`work directory: ${workDir}`)
    return await runDemo(opts, workDir, children, views, abort.signal)
  } catch (err) {
    for (const v of views) v.stop() // give the terminal back before saying anything
    if (interruptedBy !== undefined || isSiError(err, 'ERR_ABORTED')) {
      say(`\ndemo: interrupted by ${interruptedBy ?? 'abort'}: stopping ${children.count} processes and removing ${workDir}`)
      return SIGNAL_EXIT[interruptedBy ?? 'SIGINT'] ?? EXIT_FAILED
    }
    process.stderr.write(`demo: failed: ${describeError(err)}\n`)
    return EXIT_FAILED
  } finally {
    for (const v of views) v.stop()
    await children.stopAll()
    if (opts.keep) say(`kept ${workDir}`)
    else await rm(workDir, { recursive: true, force: true, maxRetries: 3 })
    for (const s of signals) process.off(s, onSignal)
  }
}

async function runDemo (opts: DemoOptions, workDir: string, children: ChildProcesses, views: LiveView[], signal: AbortSignal): Promise<number> {
  const demoStartedAt = Date.now()
  const source = join(workDir, 'image-src')
  const repo = join(workDir, 'repo')

  const tree = await makeSampleImage(source, opts.sizeBytes)
  signal.throwIfAborted()
  say(`sample image:   ${formatMB(tree.bytes)} in ${tree.files} files, ${tree.directories} directories, ${tree.symlinks} symlinks, ${tree.hardlinks} hard link`)
  const added = await untilAborted(addImage(children, SERVER_EXE, { name: IMAGE_NAME, from: source, repo }), signal)
  say(`image:          ${added.description.replace(INFO_HASH_CLAUSE, '')}`)
  const trustedKey = await untilAborted(signingKey(children, SERVER_EXE, repo), signal)
  say(`signing key:    ${trustedKey} (the agents trust only it)`)
  const server = await untilAborted(startServer(children, SERVER_EXE, { repo, uploadLimit: `${Math.round(opts.uploadLimitBytesPerSecond)}B` }), signal)
  const imageBytes = await fetchImageSize(server.url, added.ref)
  say(`server:         ${server.url}, seeder on port ${server.peerPort}`)

  let serverBytesSent: number | undefined
  const poll = setInterval(() => { fetchStatus(server.url).then(s => { serverBytesSent = s.serverBytesSent }, () => {}) }, STATUS_POLL_MS)
  const nodes = Array.from({ length: opts.nodes }, (_, i) => nodeName(i))
  const states: NodeState[] = [] // filled once the agents exist; the view reads it live
  const view = new LiveView(out, {
    title: `${opts.nodes} nodes installing ${added.ref} (${formatMB(imageBytes)}), server upload capped at ${formatMB(opts.uploadLimitBytesPerSecond)}/s`,
    nodes: states,
    imageBytes,
    startedAt: Date.now(),
    serverBytesSent: () => serverBytesSent
  })
  views.push(view)
  await mkdir(join(workDir, 'logs'))
  const deployStartedAt = Date.now()
  const runs: AgentRun[] = nodes.map(node => startAgent(children, {
    exe: AGENT_EXE, serverUrl: server.url, imageRef: added.ref, trustedKey, node, workDir, seedMaxSeconds: opts.seedMaxSeconds,
    onPhase: s => view.onNodeEvent(s)
  }))
  states.push(...runs.map(r => r.state))
  say('')
  view.start()

  const allFinished = Promise.all(runs.map(r => r.finished))
  let timedOut = false
  try {
    if (!await untilAborted(settlesWithin(allFinished, opts.timeoutSeconds * 1000), signal)) {
      timedOut = true
      await children.stop(runs.map(r => r.child))
      await allFinished
    }
  } finally {
    clearInterval(poll)
  }
  const deployEndedAt = Date.now()
  const status = await fetchStatus(server.url).catch(() => undefined)
  view.stop()
  if (timedOut) say(`\ndemo: the deployment was not over after ${opts.timeoutSeconds} s: agents stopped`)

  const installed = runs.filter(r => r.state.exitCode === 0)
  if (installed.length > 0) say(`\nverifying ${installed.length} targets against the source tree, attribute by attribute...`)
  const checks = await verifyTargets(source, installed.map(r => r.state.target), signal)
  const verifications: Array<Verification | undefined> = runs.map(r => {
    const i = installed.indexOf(r)
    return i < 0 ? undefined : checks[i]
  })

  const summary = buildSummary({
    imageRef: added.ref,
    imageBytes,
    uploadLimitBytesPerSecond: opts.uploadLimitBytesPerSecond,
    demoStartedAt,
    deployStartedAt,
    deployEndedAt,
    serverBytesSent: status?.serverBytesSent ?? NaN,
    nodes: runs.map(r => r.state),
    verifications
  })
  out.write(formatSummary(summary))
  if (status === undefined) say('demo: could not read the server\'s figures from /api/status')
  if (opts.summaryJson !== undefined) await writeFile(opts.summaryJson, JSON.stringify({ ...summary, timedOut }, null, 2) + '\n')
  return summary.ok && !timedOut ? EXIT_OK : EXIT_FAILED
}

/** Waits for `p`, but gives up at once when the demo is interrupted. */
function untilAborted<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

main(process.argv.slice(2)).then(code => process.exit(code), err => {
  process.stderr.write(`demo: ${describeError(err)}\n`)
  process.exit(EXIT_FAILED)
})
