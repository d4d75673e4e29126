// Running the system tools the harness drives (ip, tc, nft, curl), each bounded in time,
// each failure a typed error naming the command.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SiError, describeError, isSiError } from '../../src/errors.ts'

export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000
/** A process that ignores SIGTERM this long gets SIGKILL. */
export const KILL_GRACE_MS = 3_000
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024

export async function run (cmd: string, args: string[], opts: { timeoutMs?: number; allowFail?: boolean } = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err !== null && opts.allowFail !== true) {
        reject(new SiError('ERR_BENCH', `${cmd} ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`, { cause: err }))
        return
      }
      resolve(String(stdout))
    })
  })
}

/** Whether a tool can be found on PATH (without running it). */
export async function hasTool (tool: string): Promise<boolean> {
  const out = await run('sh', ['-c', `command -v ${tool} || true`])
  return out.trim() !== ''
}

/** Stops a child: SIGTERM (or `first`), then SIGKILL after a grace period; resolves once it has exited. */
export async function stopChild (child: ChildProcess, graceMs = KILL_GRACE_MS, first: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  signalGroup(child, first)
  const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

/**
 * Signals the child's whole process group: clients and daemons fork (rsync's per
 * connection children, udp-receiver under the agent, aria2c under a shell).
 */
function signalGroup (child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal)
  } catch {
    child.kill(signal)
  }
}

/** Every child still running, so that an interrupted run can stop them all. */
const running = new Set<ChildProcess>()

/** Spawns a tracked child with its output piped; stopAllChildren() ends whatever is left. */
export function spawnTracked (cmd: string, args: string[]): ChildProcess {
  // Its own process group, so that stopping it reaches whatever it forked.
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  running.add(child)
  child.once('exit', () => running.delete(child))
  child.once('error', () => running.delete(child))
  return child
}

export async function stopAllChildren (): Promise<void> {
  await Promise.all([...running].map(c => stopChild(c)))
}

/** Resolves with the exit code (or the signal's name) once the child has exited. */
export function exitOf (child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode)
  if (child.signalCode !== null) return Promise.resolve(child.signalCode)
  return new Promise(resolve => {
    child.once('exit', (code, sig) => resolve(code ?? sig ?? 'unknown'))
    child.once('error', () => resolve('spawn-error'))
  })
}

/** Keeps the last bytes of a stream, to explain a failure. */
export function tail (stream: NodeJS.ReadableStream | null, maxBytes = 4096): () => string {
  let text = ''
  stream?.on('data', (c: Buffer) => { text = (text + c.toString('utf8')).slice(-maxBytes) })
  return () => text
}

export function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/**
 * Runs a harness's main when its file is the one node was asked to run (not when imported):
 * exit code 2 for a usage error, 1 for any other failure, named in the log.
 */
export function runIfMain (metaUrl: string, main: (argv: string[]) => Promise<number>, log: (line: string) => void): void {
  if (process.argv[1] === undefined || resolve(process.argv[1]) !== fileURLToPath(metaUrl)) return
  main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
    log(`error: ${describeError(err)}`)
    process.exitCode = isSiError(err, 'ERR_INVALID_ARGUMENT') ? 2 : 1
  })
}
