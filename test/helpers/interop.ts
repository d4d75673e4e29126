// Helpers for test/interop.test.ts: our executables next to standard BitTorrent clients
// (Debian's aria2c and transmission-cli), all real processes on 127.0.0.1 only, every one
// of them stopped by the suite's after-hooks, every wait bounded.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, copyFileSync, createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync, type WriteStream } from 'node:fs'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'
import { decodeBencode, isBencodeDict, type BencodeValue } from '../../src/torrent/bencode.ts'

export const ROOT = resolve(import.meta.dirname, '../..')
/** SI_INTEROP_DIST points the suite at other executables (e.g. a build of an older commit). */
const DIST = process.env.SI_INTEROP_DIST ?? join(ROOT, 'dist')
const STOP_GRACE_MS = 3_000
/** How long we wait for another engineer's concurrent `make build` to put dist/ back. */
const DIST_WAIT_MS = 60_000

export function hasCommand (name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0
}

export function sleep (ms: number): Promise<void> {
  return new Promise(r => setTimeout(r, ms))
}

/** Polls `check` until it returns a value other than undefined, or fails after timeoutMs. */
export async function waitFor<T> (what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (err) { lastError = err }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError !== undefined ? ` (last error: ${String(lastError)})` : ''}`)
    await sleep(intervalMs)
  }
}

/**
 * Copies dist/si-agent and dist/si-server into `dir`, so that a rebuild by someone else
 * during the run (build.mjs renames new executables into place) cannot change them under us.
 */
export async function snapshotExecutables (dir: string): Promise<{ agent: string; server: string }> {
  mkdirSync(dir, { recursive: true })
  const out: Record<string, string> = {}
  for (const name of ['si-agent', 'si-server']) {
    const src = join(DIST, name)
    const dst = join(dir, name)
    await waitFor(`${src} (run make build)`, DIST_WAIT_MS, () => {
      if (!existsSync(src)) return undefined
      copyFileSync(src, dst) // fails if the file is renamed away mid-copy: retried
      chmodSync(dst, 0o755)
      return true
    }, 500)
    out[name] = dst
  }
  return { agent: out['si-agent'], server: out['si-server'] }
}

export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((r, j) => { server.once('error', j); server.listen(0, '127.0.0.1', () => r()) })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  await new Promise<void>(r => server.close(() => r()))
  return port
}

/** A child process with its output kept (and copied to a log file), stoppable by pid. */
export class Proc {
  readonly name: string
  readonly child: ChildProcess
  readonly logFile: string
  stdout = ''
  stderr = ''
  exitCode: number | null = null
  signal: NodeJS.Signals | null = null
  readonly exited: Promise<void>
  private readonly log: WriteStream

  constructor (name: string, command: string, args: string[], opts: { logDir: string; cwd?: string; env?: NodeJS.ProcessEnv }) {
    this.name = name
    this.logFile = join(opts.logDir, `${name}.log`)
    this.log = createWriteStream(this.logFile)
    this.log.write(`$ ${command} ${args.map(a => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`).join(' ')}\n`)
    this.child = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child.stdout?.on('data', (c: Buffer) => { this.stdout += c.toString(); this.log.write(c) })
    this.child.stderr?.on('data', (c: Buffer) => { this.stderr += c.toString(); this.log.write(c) })
    this.exited = new Promise(r => {
      this.child.once('error', err => { this.stderr += `spawn error: ${err.message}\n`; r() })
      this.child.once('close', (code, signal) => { this.exitCode = code; this.signal = signal; this.log.end(); r() })
    })
  }

  get running (): boolean { return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined }

  /** Resolves with the exit code, or fails after timeoutMs (the process is then killed). */
  async wait (timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>(r => { timer = setTimeout(() => r('timeout'), timeoutMs) })
    const r = await Promise.race([this.exited.then(() => 'exited' as const), timedOut])
    clearTimeout(timer)
    if (r === 'timeout') {
      await this.stop()
      throw new Error(`${this.name} did not finish within ${timeoutMs} ms; output:\n${this.tail()}`)
    }
    return this.exitCode
  }

  /** SIGTERM, then SIGKILL after a grace period; only this process, by its pid. */
  async stop (): Promise<void> {
    if (!this.running) { await this.exited; return }
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => { if (this.running) this.child.kill('SIGKILL') }, STOP_GRACE_MS)
    await this.exited
    clearTimeout(timer)
  }

  /** The last lines of its output (carriage-return progress lines unfolded). */
  tail (lines = 25): string {
    const all = (this.stdout + this.stderr).replace(/\r/g, '\n').split('\n').filter(l => l.trim() !== '')
    return all.slice(-lines).join('\n')
  }
}

/** Every process a suite starts, stopped in its after-hook. */
export class ProcessGroup {
  private readonly procs: Proc[] = []
  constructor (readonly logDir: string) {}

  start (name: string, command: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
    const p = new Proc(name, command, args, { logDir: this.logDir, ...opts })
    this.procs.push(p)
    return p
  }

  async stopAll (): Promise<void> {
    await Promise.all(this.procs.map(p => p.stop()))
  }
}

export interface ServerStatus {
  seederUploadedBytes: number
  payloadBytesSent: number
  serverBytesSent: number
  [key: string]: unknown
}

export interface RunningServer {
  proc: Proc
  base: string
  httpPort: number
  peerPort: number
  status: () => Promise<ServerStatus>
}

/** `si-server serve` on 127.0.0.1 with ports chosen by the system, read back from its banner. */
export async function startServer (group: ProcessGroup, exe: string, repo: string, opts: { name: string; seed: boolean; extra?: string[] }): Promise<RunningServer> {
  const args = ['serve', '--repo', repo, '--listen', '127.0.0.1:0', '--peer-listen', '127.0.0.1:0', '--announce-interval', '2', ...(opts.seed ? [] : ['--no-seed']), ...(opts.extra ?? [])]
  const proc = group.start(opts.name, exe, args)
  const m = await waitFor(`${opts.name} to print its ports`, 15_000, () => {
    if (!proc.running) throw new Error(`si-server exited (${String(proc.exitCode)}): ${proc.tail()}`)
    return /on http:\/\/127\.0\.0\.1:(\d+), seeding on port (\d+)/.exec(proc.stderr) ?? undefined
  })
  const httpPort = Number(m[1])
  const base = `http://127.0.0.1:${httpPort}`
  return {
    proc,
    base,
    httpPort,
    peerPort: Number(m[2]),
    status: async () => await getJson(`${base}/api/status`) as ServerStatus
  }
}

export async function getBuffer (url: string, timeoutMs = 10_000): Promise<Buffer> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`)
  return Buffer.from(await res.arrayBuffer())
}

export async function getJson (url: string, timeoutMs = 10_000): Promise<unknown> {
  return JSON.parse((await getBuffer(url, timeoutMs)).toString('utf8'))
}

/** BEP 48 scrape of one torrent: seeds (complete) and leechers (incomplete) the tracker knows. */
export async function scrape (base: string, infoHashHex: string): Promise<{ complete: number; incomplete: number }> {
  const encoded = [...Buffer.from(infoHashHex, 'hex')].map(b => `%${b.toString(16).padStart(2, '0')}`).join('')
  const reply = decodeBencode(await getBuffer(`${base}/scrape?info_hash=${encoded}`))
  const files = isBencodeDict(reply) ? reply.files : undefined
  // One torrent asked, so at most one entry (its key, the raw hash, is not valid text).
  const entry: BencodeValue | undefined = isBencodeDict(files) ? Object.values(files)[0] : undefined
  if (!isBencodeDict(entry)) return { complete: 0, incomplete: 0 }
  return { complete: Number(entry.complete ?? 0), incomplete: Number(entry.incomplete ?? 0) }
}

/**
 * A small root file system: a few MB of incompressible data over several pieces, plus the
 * kinds of entries an image has (directories, modes, a symlink, a hard link, an empty file).
 */
export function makeSourceTree (dir: string, bigBytes: number): void {
  mkdirSync(join(dir, 'etc'), { recursive: true })
  mkdirSync(join(dir, 'usr/bin'), { recursive: true })
  mkdirSync(join(dir, 'var/empty'), { recursive: true })
  mkdirSync(join(dir, 'tmp'), { recursive: true })
  chmodSync(join(dir, 'tmp'), 0o1777)
  writeFileSync(join(dir, 'etc/hostname'), 'interop\n')
  writeFileSync(join(dir, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 })
  chmodSync(join(dir, 'etc/shadow'), 0o640)
  writeFileSync(join(dir, 'etc/empty.conf'), '')
  writeFileSync(join(dir, 'usr/bin/payload'), randomBytes(bigBytes))
  chmodSync(join(dir, 'usr/bin/payload'), 0o4755)
  writeFileSync(join(dir, 'usr/bin/tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 })
  chmodSync(join(dir, 'usr/bin/tool'), 0o755)
  spawnSync('ln', [join(dir, 'usr/bin/tool'), join(dir, 'usr/bin/tool-link')])
  spawnSync('ln', ['-s', '../etc/hostname', join(dir, 'usr/hostname-link')])
}

/** aria2c options shared by every run: nothing public (no DHT, no LPD, no IPv6), logs kept. */
export function aria2cCommonArgs (opts: { dir: string; listenPort: number; logFile: string }): string[] {
  return [
    '--no-conf=true',
    `--dir=${opts.dir}`,
    '--enable-dht=false',
    '--enable-dht6=false',
    '--bt-enable-lpd=false',
    '--enable-peer-exchange=true',
    '--disable-ipv6=true',
    `--listen-port=${opts.listenPort}`,
    '--file-allocation=none',
    '--allow-overwrite=true',
    '--auto-file-renaming=false',
    '--bt-save-metadata=false',
    '--summary-interval=0',
    '--console-log-level=notice',
    '--download-result=full',
    `--log=${opts.logFile}`,
    '--log-level=info'
  ]
}

export interface Aria2cConnections {
  /** separate connections aria2c opened to the peer */
  count: number
  /** connections that ended after aria2c had sent a bitfield that was not its first message */
  droppedAfterLateBitfield: number
}

/**
 * aria2c's connections to one peer, from its info log: one "CUID#N - Connecting to" per
 * attempt (a retry over the plain handshake after the encrypted one keeps the same CUID),
 * then "CUID#N - To: HOST:PORT <message>" for each message it sent there.
 */
export function aria2cConnections (logFile: string, host: string, port: number): Aria2cConnections {
  const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''
  const peer = `${host}:${port}`
  const sent = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const m = /CUID#(\d+) - (Connecting to|To:) (\S+)(?: (\S+))?/.exec(line)
    if (m === null || m[3] !== peer) continue
    const messages = sent.get(m[1]) ?? []
    sent.set(m[1], messages)
    if (m[2] === 'To:' && m[4] !== undefined && m[4] !== 'handshake' && m[4] !== 'extended') messages.push(m[4])
  }
  const cuids = [...sent.keys()]
  let late = 0
  for (const cuid of cuids.slice(0, -1)) { // every connection but the last one was dropped
    if ((sent.get(cuid) ?? []).indexOf('bitfield', 1) > 0) late++
  }
  return { count: cuids.length, droppedAfterLateBitfield: late }
}

/**
 * A configuration directory for transmission-cli: nothing public (no DHT, LPD, uTP, port
 * mapping, blocklist, RPC), plain-text peers tolerated, bound to loopback. A leecher stops
 * (and transmission-cli exits) once complete: ratio limit 0.
 */
export function transmissionConfig (dir: string, role: 'leech' | 'seed'): string {
  mkdirSync(dir, { recursive: true })
  const settings = {
    'dht-enabled': false,
    'lpd-enabled': false,
    'utp-enabled': false,
    'pex-enabled': true,
    'port-forwarding-enabled': false,
    'blocklist-enabled': false,
    'rpc-enabled': false,
    encryption: 0,
    'bind-address-ipv4': '127.0.0.1',
    'bind-address-ipv6': '::1',
    'speed-limit-up-enabled': false,
    'speed-limit-down-enabled': false,
    'idle-seeding-limit-enabled': false,
    'incomplete-dir-enabled': false,
    'ratio-limit-enabled': role === 'leech',
    'ratio-limit': 0,
    'message-level': 2
  }
  writeFileSync(join(dir, 'settings.json'), JSON.stringify(settings, null, 2) + '\n')
  return dir
}

export interface AgentRun {
  code: number | null
  events: Array<Record<string, unknown>>
  done: Record<string, unknown> | undefined
  error: Record<string, unknown> | undefined
  proc: Proc
}

/** `si-agent deploy --json`, run to its end (bounded), with its JSON events parsed. */
export async function runAgent (group: ProcessGroup, exe: string, name: string, args: string[], timeoutMs: number): Promise<AgentRun> {
  const proc = group.start(name, exe, ['deploy', '--json', '--no-report', '--node', name, ...args])
  const code = await proc.wait(timeoutMs)
  const events: Array<Record<string, unknown>> = []
  for (const line of proc.stdout.split('\n')) {
    if (line.trim() === '') continue
    try { events.push(JSON.parse(line) as Record<string, unknown>) } catch { /* not an event */ }
  }
  return {
    code,
    events,
    done: events.find(e => e.type === 'done'),
    error: events.find(e => e.type === 'error'),
    proc
  }
}

/** One line per event that is not a progress tick: what a failing assertion shows. */
export function describeAgent (run: AgentRun): string {
  const lines = run.events.filter(e => e.type !== 'progress').map(e => JSON.stringify(e))
  return `si-agent exit ${String(run.code)}\n${lines.slice(-15).join('\n')}\n${run.proc.stderr.split('\n').slice(-10).join('\n')}`
}
