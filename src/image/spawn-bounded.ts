// spawn() with a time limit that cannot outlive the child. Node's own `timeout` option
// keeps its timer (and so the whole process) alive after a spawn that failed with ENOENT,
// which held a finished agent up for a minute in the initramfs.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'

export function spawnBounded (command: string, args: string[], options: SpawnOptions, timeoutMs: number): ChildProcess {
  const child = spawn(command, args, options)
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const clear = (): void => clearTimeout(timer)
  child.once('error', clear)
  child.once('close', clear)
  return child
}
