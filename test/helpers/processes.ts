// Real processes for end-to-end tests: the built executables, started and always stopped.
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { existsSync } from 'node:fs'
import { makeTree } from './trees.ts'

export const DIST = resolve(import.meta.dirname, '../../dist')
export const SI_AGENT = resolve(DIST, 'si-agent')
export const SI_SERVER = resolve(DIST, 'si-server')
const STOP_GRACE_MS = 5_000

export function requireBuild (): void {
  if (!existsSync(SI_AGENT) || !existsSync(SI_SERVER)) throw new Error('dist/si-agent and dist/si-server are missing: run `make build` first')
}

export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(r => server.listen(0, '127.0.0.1', () => r()))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  await new Promise<void>(r => server.close(() => r()))
  return port
}

export interface RunResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs a command to its end (killed after the timeout). */
export function run (command: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000)
    child.on('error', err => { clearTimeout(timer); reject(err) })
    child.on('close', (code, signal) => { clearTimeout(timer); resolvePromise({ code, signal, stdout, stderr }) })
  })
}

/** A long-running process, stopped by stop() (SIGTERM, then SIGKILL). */
export class Background {
  readonly child: ChildProcess
  stdout = ''
  stderr = ''
  private readonly exited: Promise<void>

  constructor (command: string, args: string[]) {
    this.child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child.stdout?.on('data', (c: Buffer) => { this.stdout += c.toString() })
    this.child.stderr?.on('data', (c: Buffer) => { this.stderr += c.toString() })
    this.exited = new Promise(r => this.child.once('close', () => r()))
  }

  async waitForOutput (pattern: RegExp, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!pattern.test(this.stdout + this.stderr)) {
      if (this.child.exitCode !== null) throw new Error(`process exited (${this.child.exitCode}) before printing ${pattern}: ${this.stderr}`)
      if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms: ${this.stderr}`)
      await new Promise(r => setTimeout(r, 50))
    }
  }

  async stop (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_GRACE_MS)
    await this.exited
    clearTimeout(timer)
  }
}

export interface ImageServerHandle { url: string; httpPort: number; peerPort: number; process: Background; status: () => Promise<Record<string, number>> }

/** `si-server serve` on loopback with free ports. */
export async function startServer (repo: string, extra: string[] = []): Promise<ImageServerHandle> {
  const httpPort = await freePort()
  const peerPort = await freePort()
  const proc = new Background(SI_SERVER, ['serve', '--repo', repo, '--listen', `127.0.0.1:${httpPort}`, '--peer-listen', `127.0.0.1:${peerPort}`, ...extra])
  await proc.waitForOutput(/serving \d+ image/)
  const url = `http://127.0.0.1:${httpPort}`
  return {
    url,
    httpPort,
    peerPort,
    process: proc,
    status: async () => await (await fetch(`${url}/api/status`)).json() as Record<string, number>
  }
}

/** JSON event lines printed by `si-agent deploy --json`. */
export function jsonEvents (stdout: string): Array<Record<string, unknown>> {
  return stdout.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)
}

/** A generated tree of `megabytes` under DIR/source, added as image `name` (uncompressed) to the repository DIR/repo. */
export async function addGeneratedImage (dir: string, name: string, megabytes: number): Promise<{ source: string; repo: string }> {
  const source = join(dir, 'source')
  const repo = join(dir, 'repo')
  await makeTree(source, megabytes)
  const added = await run(SI_SERVER, ['image', 'add', name, '--from', source, '--repo', repo, '--compression', 'none'])
  if (added.code !== 0) throw new Error(`image add failed: ${added.stderr}`)
  return { source, repo }
}
