// Child processes of the e2e run: each one's output goes to a log file, each one is
// awaited with a bound, and every one still running at the end is killed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { SiError, describeError } from '../../src/errors.ts'

const KILL_GRACE_MS = 3_000
const COMMAND_TIMEOUT_MS = 120_000

export interface Running {
  name: string
  child: ChildProcess
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const running = new Set<Running>()

export function start (name: string, argv: string[], logFile: string): Running {
  const log = createWriteStream(logFile)
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.pipe(log, { end: false })
  child.stderr?.pipe(log, { end: false })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(resolve => {
    child.on('error', err => { log.write(`cannot start ${argv[0]}: ${err.message}\n`); resolve({ code: -1, signal: null }) })
    child.on('close', (code, signal) => { log.end(); resolve({ code, signal }) })
  })
  const r: Running = { name, child, exited }
  running.add(r)
  void exited.then(() => running.delete(r))
  return r
}

/** Waits for exit; past `ms`, kills it and says so. */
export async function waitExit (r: Running, ms: number): Promise<{ code: number | null; timedOut: boolean }> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>(resolve => { timer = setTimeout(() => resolve('timeout'), ms) })
  const outcome = await Promise.race([r.exited, timeout])
  clearTimeout(timer)
  if (outcome === 'timeout') {
    await stop(r)
    return { code: null, timedOut: true }
  }
  return { code: outcome.code, timedOut: false }
}

export async function stop (r: Running): Promise<void> {
  if (r.child.exitCode !== null || r.child.signalCode !== null) return
  r.child.kill('SIGTERM')
  const killer = setTimeout(() => r.child.kill('SIGKILL'), KILL_GRACE_MS)
  await r.exited
  clearTimeout(killer)
}

export async function stopAll (): Promise<void> {
  await Promise.all([...running].map(stop))
}

/** A command that must succeed within `timeoutMs`; its stdout. */
export function must (argv: string[], input?: string, timeoutMs = COMMAND_TIMEOUT_MS): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', input, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 })
  if (r.status !== 0) throw new SiError('ERR_COMMAND_FAILED', `${argv.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`)
  return r.stdout
}

export function has (command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

/** Ctrl-C or a TERM stops every child; the returned function takes the handlers off. */
export function stopOnSignals (): () => void {
  const onSignal = (): void => { void stopAll() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  return () => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

/** Runs `main` when `moduleUrl` is the script node was given (tests import the module instead). */
export function runIfMain (moduleUrl: string, label: string, main: (argv: string[]) => Promise<number>): void {
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(resolve(process.argv[1])).href) return
  main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
    process.stderr.write(`${label}: error: ${describeError(err)}\n`)
    process.exitCode = 1
  })
}
