// Runs the system tools an install needs (sfdisk, mkfs, mount, chroot): bounded in time,
// killed on abort, and failing with the tool's own last words in the error.
import { spawn } from 'node:child_process'
import { SiError } from '../errors.ts'

export const DEFAULT_COMMAND_TIMEOUT_MS = 120_000
/** What an error message and a report keep of a tool's output. */
export const OUTPUT_TAIL_BYTES = 4096
const KILL_GRACE_MS = 2_000

export interface CommandOptions {
  input?: string
  timeoutMs?: number
  signal?: AbortSignal
  env?: NodeJS.ProcessEnv
  /** every line of output as it comes (post-install steps show theirs on the console) */
  onLine?: (line: string) => void
}

export interface CommandResult { stdout: string; output: string }

/** Last bytes of a tool's output, cut at a line start. */
export function tail (text: string, bytes = OUTPUT_TAIL_BYTES): string {
  if (text.length <= bytes) return text.trim()
  const cut = text.slice(-bytes)
  const nl = cut.indexOf('\n')
  return (nl >= 0 ? cut.slice(nl + 1) : cut).trim()
}

export async function runCommand (cmd: string, args: string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS
  const shown = [cmd, ...args].join(' ')
  if (opts.signal?.aborted === true) throw new SiError('ERR_ABORTED', `${shown}: aborted`)
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env })
    let stdout = ''
    let output = ''
    let partial = ''
    let why: string | undefined
    const onData = (toStdout: boolean) => (chunk: Buffer): void => {
      const text = chunk.toString('utf8')
      if (toStdout) stdout += text
      output = tail(output + text, OUTPUT_TAIL_BYTES * 4)
      if (opts.onLine !== undefined) {
        const lines = (partial + text).split('\n')
        partial = lines.pop() ?? ''
        for (const l of lines) opts.onLine(l)
      }
    }
    const stop = (reason: string): void => {
      why ??= reason
      child.kill('SIGTERM')
      killer ??= setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS)
    }
    let killer: NodeJS.Timeout | undefined
    const timer = setTimeout(() => stop(`timed out after ${Math.round(timeoutMs / 1000)} s`), timeoutMs)
    const onAbort = (): void => stop('aborted')
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    const cleanup = (): void => {
      clearTimeout(timer)
      clearTimeout(killer)
      opts.signal?.removeEventListener('abort', onAbort)
    }
    child.stdout.on('data', onData(true))
    child.stderr.on('data', onData(false))
    child.stdin.on('error', () => { /* the exit status tells */ })
    child.on('error', err => {
      cleanup()
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
      reject(new SiError('ERR_COMMAND_FAILED', `cannot run ${cmd}: ${missing ? 'not installed (add it to initrd/contents.txt)' : err.message}`, { cause: err }))
    })
    child.on('close', (code, signal) => {
      cleanup()
      if (partial !== '' && opts.onLine !== undefined) opts.onLine(partial)
      if (code === 0 && why === undefined) { resolve({ stdout, output }); return }
      if (why === 'aborted') { reject(new SiError('ERR_ABORTED', `${shown}: aborted`)); return }
      const status = why ?? (signal !== null ? `killed by ${signal}` : `exit status ${code}`)
      const said = tail(output, 600)
      reject(new SiError('ERR_COMMAND_FAILED', `${shown}: ${status}${said !== '' ? `: ${said}` : ''}`))
    })
    child.stdin.end(opts.input)
  })
}
