// Unpacks an image tarball into the target filesystem with every attribute, treating
// the archive as hostile: the target directory is a jail. Nothing is ever written
// through a symlink: parents are checked component by component with lstat, existing
// entries are unlinked (never opened), files are created O_EXCL|O_NOFOLLOW, and
// directory attributes are applied through O_NOFOLLOW handles at the end.
import { spawnSync } from 'node:child_process'
import { constants as fsc } from 'node:fs'
import { chmod, lchown, link, lstat, lutimes, mkdir, open, realpath, rmdir, symlink, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import * as tar from 'tar-stream'
import { SiError, isSiError } from '../errors.ts'
import { entryAttrs, type EntryAttrs, type TarHeader } from '../image/tar-attrs.ts'

/** Directories the archive implies but does not list. */
const IMPLICIT_DIR_MODE = 0o755
/** Until their own attributes land at the end, created entries are private to us. */
const CREATE_DIR_MODE = 0o700
const CREATE_FILE_MODE = 0o600
const CREATE_NODE_MODE = '600'
/** mkfifo and mknod return at once; a hung one must not hang the install. */
const TOOL_TIMEOUT_MS = 30_000
const ROOT_NAME = '.'
/** Files whose attributes are still being applied (each holds a descriptor). */
const MAX_BACKGROUND_JOBS = 64

export interface ExtractOptions {
  signal?: AbortSignal
  onEntry?(name: string): void
}

export interface ExtractResult {
  entries: number
  /** Bytes of regular-file content written. */
  bytes: number
}

function unsafe (name: string, why: string): never {
  throw new SiError('ERR_UNSAFE_ARCHIVE', `entry "${name}": ${why}`)
}

function errno (err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code
}

/** The path components of an archive path, or an ERR_UNSAFE_ARCHIVE if it could escape. */
function components (path: string, entry: string, what: string): string[] {
  if (path.includes('\0')) unsafe(entry, `${what} contains a NUL byte`)
  if (path.startsWith('/')) unsafe(entry, `${what} "${path}" is absolute`)
  const parts = path.split('/').filter(p => p !== '' && p !== '.')
  if (parts.includes('..')) unsafe(entry, `${what} "${path}" has a ".." component`)
  return parts
}

function runTool (tool: string, args: string[], entry: string): void {
  const r = spawnSync(tool, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: TOOL_TIMEOUT_MS })
  if (r.error !== undefined) {
    const why = errno(r.error) === 'ENOENT' ? `${tool} is not installed` : r.error.message
    throw new SiError('ERR_ARCHIVE', `entry "${entry}": cannot run ${tool}: ${why}`, { cause: r.error })
  }
  if (r.status !== 0) {
    const stderr = r.stderr.toString().trim()
    throw new SiError('ERR_ARCHIVE', `entry "${entry}": ${tool} failed (${r.status ?? r.signal}): ${stderr}`)
  }
}

class Jail {
  /** Relative paths checked to be real directories (not symlinks) since their last change. */
  private readonly verified = new Set<string>()
  readonly dirs = new Map<string, EntryAttrs>()
  private readonly asRoot = process.getuid?.() === 0
  private readonly pending = new Set<Promise<void>>()
  private backgroundError: unknown

  constructor (readonly root: string) {}

  abs (rel: string): string {
    return rel === '' ? this.root : join(this.root, rel)
  }

  /** Makes sure every parent of `parts` is a real directory inside the jail, creating missing ones. */
  async prepareParents (parts: string[], entry: string): Promise<void> {
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/')
      if (this.verified.has(rel)) continue
      const abs = this.abs(rel)
      try {
        const st = await lstat(abs)
        if (st.isSymbolicLink()) unsafe(entry, `parent "${rel}" is a symlink`)
        if (!st.isDirectory()) throw new SiError('ERR_ARCHIVE', `entry "${entry}": parent "${rel}" is not a directory`)
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err
        await mkdir(abs, IMPLICIT_DIR_MODE)
      }
      this.verified.add(rel)
    }
  }

  /** Checks an existing path (a hard link's target) without creating or following anything. */
  async checkExisting (parts: string[], entry: string): Promise<void> {
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i).join('/')
      let st
      try {
        st = await lstat(this.abs(rel))
      } catch (err) {
        if (errno(err) === 'ENOENT') throw new SiError('ERR_ARCHIVE', `entry "${entry}": link target "${parts.join('/')}" does not exist`)
        throw err
      }
      const last = i === parts.length
      if (!last && st.isSymbolicLink()) unsafe(entry, `link target passes through symlink "${rel}"`)
      if (!last && !st.isDirectory()) throw new SiError('ERR_ARCHIVE', `entry "${entry}": "${rel}" is not a directory`)
      if (last && st.isDirectory()) throw new SiError('ERR_ARCHIVE', `entry "${entry}": cannot hard-link to directory "${rel}"`)
    }
  }

  /**
   * Removes whatever is at rel so the entry can be created fresh. An existing real
   * directory is kept when the new entry is one too; returns whether it was kept.
   */
  async clear (rel: string, entry: string, keepDirectory: boolean): Promise<boolean> {
    const abs = this.abs(rel)
    let st
    try {
      st = await lstat(abs)
    } catch (err) {
      if (errno(err) === 'ENOENT') return false
      throw err
    }
    if (st.isDirectory()) {
      if (keepDirectory) return true
      try {
        await rmdir(abs)
      } catch (err) {
        if (errno(err) === 'ENOTEMPTY' || errno(err) === 'EEXIST') {
          throw new SiError('ERR_ARCHIVE', `entry "${entry}": would replace non-empty directory "${rel}"`)
        }
        throw err
      }
      this.forget(rel)
    } else {
      await unlink(abs)
    }
    return false
  }

  private forget (rel: string): void {
    const prefix = `${rel}/`
    for (const p of this.verified) if (p === rel || p.startsWith(prefix)) this.verified.delete(p)
    for (const p of this.dirs.keys()) if (p === rel || p.startsWith(prefix)) this.dirs.delete(p)
  }

  async directory (rel: string, attrs: EntryAttrs, entry: string): Promise<void> {
    if (rel !== '' && !(await this.clear(rel, entry, true))) await mkdir(this.abs(rel), CREATE_DIR_MODE)
    if (rel !== '') this.verified.add(rel)
    this.dirs.set(rel, attrs)
  }

  /** Creates a file, O_EXCL|O_NOFOLLOW, removing whatever held the path only if needed. */
  private async create (rel: string): Promise<FileHandle> {
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW
    try {
      return await open(this.abs(rel), flags, CREATE_FILE_MODE)
    } catch (err) {
      // Fresh targets rarely hold anything: try first, clear on conflict.
      if (errno(err) !== 'EEXIST' && errno(err) !== 'ELOOP') throw err
    }
    await this.clear(rel, rel, false)
    return await open(this.abs(rel), flags, CREATE_FILE_MODE)
  }

  async file (rel: string, attrs: EntryAttrs, data: Readable): Promise<number> {
    const fh = await this.create(rel)
    let written = 0
    try {
      for await (const chunk of data) {
        const buf = chunk as Buffer
        for (let off = 0; off < buf.length;) {
          const { bytesWritten } = await fh.write(buf, off, buf.length - off)
          off += bytesWritten
        }
        written += buf.length
      }
    } catch (err) {
      await fh.close()
      throw err
    }
    await this.inBackground(this.finishFile(fh, attrs))
    return written
  }

  /** Attributes through the descriptor: no path is involved, so no later entry can interfere. */
  private async finishFile (fh: FileHandle, attrs: EntryAttrs): Promise<void> {
    try {
      // chown clears setuid/setgid, so the mode goes on after it.
      if (this.asRoot) await fh.chown(attrs.uid, attrs.gid)
      await fh.chmod(attrs.mode)
      await fh.utimes(attrs.atime, attrs.mtime)
    } finally {
      await fh.close()
    }
  }

  /**
   * Runs a file's closing steps while the next entries are extracted: each is a
   * thread-pool round trip, and in a tree of small files they would dominate.
   */
  private async inBackground (job: Promise<void>): Promise<void> {
    const tracked = job.then(
      () => { this.pending.delete(tracked) },
      err => { this.pending.delete(tracked); this.backgroundError ??= err }
    )
    this.pending.add(tracked)
    if (this.pending.size >= MAX_BACKGROUND_JOBS) await Promise.race(this.pending)
    this.throwBackgroundError()
  }

  private throwBackgroundError (): void {
    if (this.backgroundError !== undefined) throw this.backgroundError
  }

  async settle (): Promise<void> {
    await Promise.all(this.pending)
    this.throwBackgroundError()
  }

  async symlink (rel: string, attrs: EntryAttrs, target: string): Promise<void> {
    await this.clear(rel, rel, false)
    // The target is kept verbatim (absolute ones are normal in an OS image): it is never
    // followed here, only resolved later by the installed system.
    await symlink(target, this.abs(rel))
    if (this.asRoot) await lchown(this.abs(rel), attrs.uid, attrs.gid)
    await lutimes(this.abs(rel), attrs.atime, attrs.mtime)
  }

  async hardlink (rel: string, targetParts: string[]): Promise<void> {
    const target = targetParts.join('/')
    if (target === rel) throw new SiError('ERR_ARCHIVE', `entry "${rel}": hard link to itself`)
    await this.checkExisting(targetParts, rel)
    await this.clear(rel, rel, false)
    // link(2) does not follow a symlink target, so linking to one links the symlink itself.
    await link(this.abs(target), this.abs(rel))
  }

  async node (rel: string, attrs: EntryAttrs, kind: 'fifo' | 'c' | 'b'): Promise<void> {
    await this.clear(rel, rel, false)
    const abs = this.abs(rel)
    // Node has neither mkfifo nor mknod; the tools exist in the initramfs and on servers.
    if (kind === 'fifo') runTool('mkfifo', ['-m', CREATE_NODE_MODE, abs], rel)
    else runTool('mknod', ['-m', CREATE_NODE_MODE, abs, kind, String(attrs.devmajor ?? 0), String(attrs.devminor ?? 0)], rel)
    const st = await lstat(abs)
    if (st.isSymbolicLink()) unsafe(rel, 'replaced by a symlink while being created')
    if (this.asRoot) await lchown(abs, attrs.uid, attrs.gid)
    await chmod(abs, attrs.mode)
    await lutimes(abs, attrs.atime, attrs.mtime)
  }

  /** Directory attributes last and deepest first, so creating children cannot disturb them. */
  async finishDirectories (): Promise<void> {
    await this.settle()
    const depth = (rel: string): number => rel === '' ? -1 : rel.split('/').length
    const order = [...this.dirs.keys()].sort((a, b) => depth(b) - depth(a))
    for (const rel of order) {
      const attrs = this.dirs.get(rel)!
      let fh
      try {
        fh = await open(this.abs(rel), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW)
      } catch (err) {
        if (errno(err) === 'ELOOP' || errno(err) === 'ENOTDIR') unsafe(rel || ROOT_NAME, 'directory was replaced by something else')
        throw err
      }
      try {
        if (this.asRoot) await fh.chown(attrs.uid, attrs.gid)
        await fh.chmod(attrs.mode)
        await fh.utimes(attrs.atime, attrs.mtime)
      } finally {
        await fh.close()
      }
    }
  }
}

async function drain (data: Readable): Promise<void> {
  for await (const _ of data) { /* entries without content may still carry bytes */ }
}

async function extractEntry (jail: Jail, header: TarHeader, data: Readable): Promise<{ name: string; bytes: number }> {
  const parts = components(header.name, header.name, 'path')
  const rel = parts.join('/')
  const name = rel || ROOT_NAME
  const attrs = entryAttrs(header)
  const type = header.type
  if (rel === '' && type !== 'directory') unsafe(header.name, 'would replace the target directory')
  await jail.prepareParents(parts, name)

  switch (type) {
    case 'directory':
      await drain(data)
      await jail.directory(rel, attrs, name)
      return { name, bytes: 0 }
    case 'file':
    case 'contiguous-file':
      return { name, bytes: await jail.file(rel, attrs, data) }
    case 'symlink':
      await drain(data)
      if (!header.linkname) throw new SiError('ERR_ARCHIVE', `entry "${name}": symlink without a target`)
      await jail.symlink(rel, attrs, header.linkname)
      return { name, bytes: 0 }
    case 'link': {
      await drain(data)
      const target = components(header.linkname ?? '', name, 'hard link target')
      if (target.length === 0) unsafe(name, 'hard link to the target directory')
      await jail.hardlink(rel, target)
      return { name, bytes: 0 }
    }
    case 'fifo':
    case 'character-device':
    case 'block-device':
      await drain(data)
      await jail.node(rel, attrs, type === 'fifo' ? 'fifo' : type === 'character-device' ? 'c' : 'b')
      return { name, bytes: 0 }
    default:
      throw new SiError('ERR_ARCHIVE', `entry "${name}": unsupported entry type ${String(type)}`)
  }
}

/** Extracts the tar stream `input` into the existing directory `target`. */
export async function extractTar (input: Readable, target: string, opts: ExtractOptions = {}): Promise<ExtractResult> {
  let root: string
  try {
    root = await realpath(target)
    if (!(await lstat(root)).isDirectory()) throw new Error('not a directory')
  } catch (err) {
    input.destroy()
    throw new SiError('ERR_INVALID_ARGUMENT', `extraction target ${target} is not a directory`, { cause: err })
  }
  const jail = new Jail(root)
  const extract = tar.extract()
  const abort = (): void => { extract.destroy(new SiError('ERR_ABORTED', 'extraction aborted')) }
  const onInputError = (err: Error): void => { extract.destroy(err) }
  input.on('error', onInputError)
  opts.signal?.addEventListener('abort', abort, { once: true })
  if (opts.signal?.aborted === true) abort()
  input.pipe(extract as unknown as NodeJS.WritableStream)

  let entries = 0
  let bytes = 0
  try {
    for await (const entry of extract) {
      const done = await extractEntry(jail, entry.header as TarHeader, entry as unknown as Readable)
      entries++
      bytes += done.bytes
      opts.onEntry?.(done.name)
    }
    await jail.finishDirectories()
    return { entries, bytes }
  } catch (err) {
    await jail.settle().catch(() => {})
    input.unpipe(extract as unknown as NodeJS.WritableStream)
    // Late errors from a stream we gave up on must not crash the process.
    input.on('error', () => {})
    input.destroy()
    extract.destroy()
    if (isSiError(err)) throw err
    throw new SiError('ERR_ARCHIVE', `extraction failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  } finally {
    input.off('error', onInputError)
    opts.signal?.removeEventListener('abort', abort)
  }
}
