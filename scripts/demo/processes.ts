// Every process the demo starts goes through here, so that one call can stop them all:
// on success, on failure and on Ctrl-C alike, nothing is left running.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'

/** Time a child gets to leave the swarm and clean its staging after SIGTERM. */
export const STOP_GRACE_MS = 5_000
/** After SIGKILL the kernel reaps at once; this only bounds the wait for the 'exit' event. */
const KILL_WAIT_MS = 2_000
/** Lines of a child's stderr kept for the report when it fails. */
export const STDERR_TAIL_LINES = 20

export interface Child {
  name: string
  process: ChildProcess
  /** resolves with the exit code (128 + signal number when killed by a signal) */
  exited: Promise<number>
  stderrTail: () => string[]
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }

export class ChildProcesses {
  private readonly running = new Set<Child>()

  spawn (name: string, command: string, args: string[], opts: SpawnOptions = {}): Child {
    const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    const tail: string[] = []
    let partial = ''
    proc.stderr?.setEncoding('utf8')
    proc.stderr?.on('data', (text: string) => {
      const lines = (partial + text).split('\n')
      partial = lines.pop() ?? ''
      tail.push(...lines)
      tail.splice(0, Math.max(0, tail.length - STDERR_TAIL_LINES))
    })
    const exited = new Promise<number>(resolve => {
      proc.once('error', () => resolve(127)) // spawn failed: the shell's "not found"
      proc.once('exit', (code, signal) => resolve(code ?? 128 + (SIGNAL_NUMBERS[signal ?? ''] ?? 0)))
    })
    const child: Child = { name, process: proc, exited, stderrTail: () => partial === '' ? [...tail] : [...tail, partial] }
    this.running.add(child)
    void exited.then(() => this.running.delete(child))
    return child
  }

  get count (): number { return this.running.size }

  /** SIGTERM to everyone still running, then SIGKILL to whoever outlives the grace period. */
  async stopAll (graceMs = STOP_GRACE_MS): Promise<void> {
    await this.stop([...this.running], graceMs)
  }

  async stop (children: Child[], graceMs = STOP_GRACE_MS): Promise<void> {
    const alive = children.filter(c => this.running.has(c))
    for (const c of alive) c.process.kill('SIGTERM')
    const late = await Promise.all(alive.map(async c => (await settlesWithin(c.exited, graceMs)) ? undefined : c))
    for (const c of late) c?.process.kill('SIGKILL')
    await Promise.all(late.map(c => c === undefined ? undefined : settlesWithin(c.exited, KILL_WAIT_MS)))
  }
}

/** Whether `p` settles within `ms`; never waits longer. */
export async function settlesWithin (p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(false), ms) })
  try {
    return await Promise.race([p.then(() => true, () => true), timeout])
  } finally {
    clearTimeout(timer)
  }
}
