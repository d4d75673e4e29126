// Golden-client capture, as SystemImager's si_getimage: the running machine's root file
// system is copied over rsync (-aHAXS --numeric-ids, one file system, with exclusions
// for what the kernel and the running system make up) into a staging tree kept per
// image under the repository, then packed as a new version. Keeping the staging tree
// makes the next capture of the same image incremental.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import type { Compression } from './compression.ts'
import { parseImageRef } from '../formats/image-ref.ts'
import type { AddPhase, ImageRepository, ImageVersion } from './repository.ts'

/** Staging trees live in the repository (same file system as the versions). */
export const CAPTURE_DIR = '.capture'
/** SystemImager's golden clients export their root as this rsync daemon module. */
export const DEFAULT_MODULE = 'root'
/** rsync's "some files vanished before they could be transferred": normal on a live system. */
const RSYNC_VANISHED = 24
const RSYNC_IO_TIMEOUT_S = 600
const MAX_STDERR_BYTES = 64 * 1024

/**
 * What a running system makes up or does not want copied: contents only, so the
 * mount points stay in the image. Patterns are rsync's, anchored at the client's root.
 */
export const DEFAULT_EXCLUDES = [
  '/proc/*',
  '/sys/*',
  '/dev/*',
  '/run/*',
  '/tmp/*',
  '/var/tmp/*',
  '/var/run/*',
  '/var/lock/*',
  '/mnt/*',
  '/media/*',
  '/lost+found',
  '/swapfile',
  '/var/cache/apt/archives/*.deb',
  '/var/lib/swarmimager/*'
]

/** Client options that keep every attribute the image carries. */
export const RSYNC_OPTIONS = [
  '-aHAXS', // perms, owners, times, devices, symlinks; hard links, ACLs, xattrs, sparse
  '--numeric-ids',
  '--one-file-system',
  '--delete',
  '--delete-excluded',
  '--atimes', // rsync >= 3.2 (Debian 12): atimes too, though only to the second
  '--open-noatime', // reading the client must not change its atimes
  // Compare mtimes to the nanosecond: by default rsync compares seconds, and leaves a
  // directory made in the same second as the client's mtime with the wrong nanoseconds.
  '--modify-window=-1',
  `--timeout=${RSYNC_IO_TIMEOUT_S}`
]

export interface CaptureSource {
  /** What rsync is given: rsync://HOST[:PORT]/MODULE/, HOST:/PATH/ (ssh) or /PATH/. */
  url: string
  /** For messages. */
  shown: string
}

/**
 * HOST means the "root" module of HOST's rsync daemon (SystemImager's golden-client
 * setup); HOST:MODULE another module; HOST:/PATH a path over ssh; rsync://... as is;
 * a local /PATH a directory here.
 */
export function parseCaptureSource (from: string, port?: number): CaptureSource {
  const withSlash = (s: string): string => s.endsWith('/') ? s : `${s}/`
  if (from.startsWith('rsync://')) return { url: withSlash(from), shown: from }
  if (from.startsWith('/')) return { url: withSlash(from), shown: from }
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(.*))?$/.exec(from)
  if (m === null) throw new SiError('ERR_INVALID_ARGUMENT', `--from ${JSON.stringify(from)}: expected HOST, HOST:MODULE, HOST:/PATH, rsync://HOST/MODULE or /PATH`)
  const host = m[1]
  const rest = m[2]
  if (rest !== undefined && rest.startsWith('/')) return { url: `${host}:${withSlash(rest)}`, shown: from }
  const module = rest === undefined || rest === '' ? DEFAULT_MODULE : rest
  if (!/^[A-Za-z0-9._-]+(\/[^\0]*)?$/.test(module)) throw new SiError('ERR_INVALID_ARGUMENT', `--from ${JSON.stringify(from)}: bad rsync module name`)
  return { url: withSlash(`rsync://${host}${port !== undefined ? `:${port}` : ''}/${module}`), shown: from }
}

export interface CaptureOptions {
  from: string
  rsyncPort?: number
  /** Added to the defaults (rsync patterns). */
  excludes?: string[]
  /** Leave DEFAULT_EXCLUDES out. */
  noDefaultExcludes?: boolean
  compression?: Compression
  pieceLength?: number
  onProgress?: (phase: AddPhase | 'rsync', done: number, total?: number) => void
  onOutput?: (line: string) => void
  signal?: AbortSignal
}

export interface CaptureResult {
  version: ImageVersion
  /** rsync said some files vanished during the copy (a live system). */
  vanished: boolean
}

function runRsync (args: string[], opts: CaptureOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('rsync', args, { stdio: ['ignore', 'pipe', 'pipe'], signal: opts.signal })
    let stderr = ''
    child.stdout!.on('data', (c: Buffer) => { for (const line of c.toString().split('\n')) if (line.trim() !== '') opts.onOutput?.(line) })
    child.stderr!.on('data', (c: Buffer) => { if (stderr.length < MAX_STDERR_BYTES) stderr += c.toString() })
    child.on('error', err => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') reject(new SiError('ERR_TOOL_MISSING', 'rsync is not installed (Debian package rsync)', { cause: err }))
      else if (err.name === 'AbortError') reject(new SiError('ERR_ABORTED', 'capture aborted', { cause: err }))
      else reject(new SiError('ERR_CAPTURE', `cannot run rsync: ${err.message}`, { cause: err }))
    })
    child.on('close', code => {
      if (code === 0 || code === RSYNC_VANISHED) resolve(code)
      else reject(new SiError('ERR_CAPTURE', `rsync from ${args[args.length - 2]} failed (exit ${code ?? 'signal'}): ${stderr.trim().split('\n').slice(-5).join(' | ')}`))
    })
  })
}

/** Copies the client into the image's staging tree, then adds it as a new version. */
export async function captureImage (repo: ImageRepository, name: string, opts: CaptureOptions): Promise<CaptureResult> {
  const ref = parseImageRef(name)
  if (ref.version !== undefined) throw new SiError('ERR_INVALID_IMAGE_NAME', `"${name}": versions are numbered by the repository; give the name only`)
  const source = parseCaptureSource(opts.from, opts.rsyncPort)
  const staging = join(repo.root, CAPTURE_DIR, ref.name)
  await mkdir(staging, { recursive: true, mode: 0o700 })
  const excludes = [...(opts.noDefaultExcludes === true ? [] : DEFAULT_EXCLUDES), ...(opts.excludes ?? [])]
  const excludeFile = join(tmpdir(), `si-capture-excludes-${process.pid}-${randomBytes(6).toString('hex')}`)
  await writeFile(excludeFile, excludes.join('\n') + '\n', { mode: 0o600 })
  let code: number
  try {
    opts.onProgress?.('rsync', 0)
    code = await runRsync([...RSYNC_OPTIONS, `--exclude-from=${excludeFile}`, '--', source.url, `${staging}/`], opts)
  } finally {
    await rm(excludeFile, { force: true })
  }
  const version = await repo.add(ref.name, {
    from: staging,
    compression: opts.compression,
    pieceLength: opts.pieceLength,
    onProgress: opts.onProgress,
    signal: opts.signal
  })
  return { version, vanished: code === RSYNC_VANISHED }
}
