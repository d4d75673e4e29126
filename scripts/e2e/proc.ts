// Child processes of the e2e run: each one's output goes to a log file, each one is
// awaited with a bound, and every one still running at the end is killed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { SiError } from '../../src/errors.ts'

const KILL_GRACE_MS = 3_000

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

/** A short command that must succeed; its stdout. */
export function must (argv: string[], input?: string): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', input, timeout: 120_000 })
  if (r.status !== 0) throw new SiError('ERR_COMMAND_FAILED', `${argv.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`)
  return r.stdout
}

export function has (command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}
