// The image server's side of the demo: add the sample image to a repository, start
// si-server on loopback with ports the kernel picks (no race for a "free" port with
// whatever else runs on this machine), and read its figures from /api/status.
import { SiError, type SiErrorCode } from '../../src/errors.ts'
import type { ChildProcesses, Child } from './processes.ts'

export const LOOPBACK = '127.0.0.1'
/** Announce often: nodes that start together should find each other within seconds. */
export const ANNOUNCE_INTERVAL_SECONDS = 2
const START_TIMEOUT_MS = 15_000
const ADD_TIMEOUT_MS = 120_000
const STATUS_TIMEOUT_MS = 2_000
// The line si-server prints once it listens: "... on http://HOST:PORT, seeding on port N".
const SERVING_LINE = /serving .* on (http:\/\/[^\s,]+), seeding on port (\d+)/

export interface ServerStatus {
  serverBytesSent: number
  seederUploadedBytes: number
  payloadBytesSent: number
  nodes: number
}

export interface AddedImage {
  ref: string
  /** si-server's own account of it (entries, size, piece length, info hash) */
  description: string
}

// The sample image's contents are pseudo-random: compressing them would gain nothing.
export async function addImage (children: ChildProcesses, exe: string, opts: { name: string; from: string; repo: string }): Promise<AddedImage> {
  const child = children.spawn('si-server image add', exe, ['image', 'add', opts.name, '--from', opts.from, '--repo', opts.repo, '--compression', 'none'])
  let stdout = ''
  child.process.stdout?.setEncoding('utf8').on('data', (t: string) => { stdout += t })
  const code = await withTimeout(child.exited, ADD_TIMEOUT_MS, 'si-server image add', 'ERR_ARCHIVE')
  const ref = stdout.trim()
  if (code !== 0 || !/^[^@\s]+@\d+$/.test(ref)) {
    throw new SiError('ERR_ARCHIVE', `si-server image add exited with ${code}: ${child.stderrTail().join(' | ')}`)
  }
  const description = child.stderrTail().find(l => l.includes(`added ${ref}`))?.replace(/^si-server: /, '') ?? `added ${ref}`
  return { ref, description }
}

/** The repository's public signing key (si-server key show), which the agents are told to trust. */
export async function signingKey (children: ChildProcesses, exe: string, repo: string): Promise<string> {
  const child = children.spawn('si-server key show', exe, ['key', 'show', '--repo', repo])
  let stdout = ''
  child.process.stdout?.setEncoding('utf8').on('data', (t: string) => { stdout += t })
  const code = await withTimeout(child.exited, ADD_TIMEOUT_MS, 'si-server key show', 'ERR_KEY')
  const key = stdout.trim()
  if (code !== 0 || !key.startsWith('ed25519:')) throw new SiError('ERR_KEY', `si-server key show exited with ${code}: ${child.stderrTail().join(' | ')}`)
  return key
}

export interface RunningServer {
  url: string
  peerPort: number
  child: Child
}

export async function startServer (children: ChildProcesses, exe: string, opts: { repo: string; uploadLimit: string }): Promise<RunningServer> {
  const child = children.spawn('si-server serve', exe, [
    'serve', '--repo', opts.repo,
    '--listen', `${LOOPBACK}:0`, '--peer-listen', `${LOOPBACK}:0`,
    '--upload-limit', opts.uploadLimit,
    '--announce-interval', String(ANNOUNCE_INTERVAL_SECONDS)
  ])
  const listening = new Promise<RunningServer>((resolve, reject) => {
    let seen = ''
    child.process.stderr?.on('data', (text: string) => {
      seen += text
      const m = SERVING_LINE.exec(seen)
      if (m !== null) resolve({ url: m[1], peerPort: Number(m[2]), child })
    })
    void child.exited.then(code => reject(new SiError('ERR_SERVER_UNREACHABLE', `si-server serve exited with ${code} before listening: ${child.stderrTail().join(' | ')}`)))
  })
  return withTimeout(listening, START_TIMEOUT_MS, 'si-server serve to start listening', 'ERR_SERVER_UNREACHABLE')
}

export async function fetchStatus (url: string): Promise<ServerStatus> {
  let body: Record<string, unknown>
  try {
    const res = await fetch(`${url}/api/status`, { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) })
    if (!res.ok) throw new SiError('ERR_HTTP_STATUS', `GET ${url}/api/status: HTTP ${res.status}`)
    body = await res.json() as Record<string, unknown>
  } catch (err) {
    if (err instanceof SiError) throw err
    throw new SiError('ERR_SERVER_UNREACHABLE', `GET ${url}/api/status: ${(err as Error).message}`, { cause: err })
  }
  const num = (key: string): number => typeof body[key] === 'number' ? body[key] as number : NaN
  return { serverBytesSent: num('serverBytesSent'), seederUploadedBytes: num('seederUploadedBytes'), payloadBytesSent: num('payloadBytesSent'), nodes: num('nodes') }
}

/** The size of the tarball the swarm carries for `ref` (NAME@VERSION), from /api/images. */
export async function fetchImageSize (url: string, ref: string): Promise<number> {
  const [name, version] = ref.split('@')
  try {
    const res = await fetch(`${url}/api/images`, { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) })
    const images = await res.json() as Array<{ name: string; version: number; size: number }>
    const image = images.find(i => i.name === name && String(i.version) === version)
    if (image !== undefined && image.size > 0) return image.size
  } catch (err) {
    throw new SiError('ERR_SERVER_UNREACHABLE', `GET ${url}/api/images: ${(err as Error).message}`, { cause: err })
  }
  throw new SiError('ERR_IMAGE_NOT_FOUND', `${ref} is not in ${url}/api/images`)
}

async function withTimeout<T> (p: Promise<T>, ms: number, what: string, code: SiErrorCode): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new SiError(code, `timed out after ${ms / 1000} s waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}
