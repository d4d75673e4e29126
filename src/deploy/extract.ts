// Unpacks an image tarball into the target filesystem with every attribute, treating
// the archive as hostile: the target directory is a jail. Nothing is ever written
// through a symlink: parents are checked component by component with lstat, existing
// entries are unlinked (never opened), files are created O_EXCL|O_NOFOLLOW, device nodes
// are made inside our private directory and renamed into place, and directory attributes
// are applied through O_NOFOLLOW handles at the end.
//
// While extraction runs, TARGET/.si-incomplete exists (see docs/FIDELITY.md): a target
// holding it is not an installed system. It is removed only once every entry and every
// attribute is in place; a failure leaves it, with the reason in it.
//
// Paths are handled as "byte strings" (latin1: one char per byte) so names that are not
// UTF-8 reach the file system unchanged; fs calls get them back as Buffers.
import { spawnSync } from 'node:child_process'
import { constants as fsc } from 'node:fs'
import {
  chmod, lchown, link, lstat, lutimes, mkdir, open, readFile, realpath, rename, rm, rmdir, symlink, unlink, utimes, writeFile, type FileHandle
} from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { SiError, isSiError } from '../errors.ts'
import { XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT, aclTextToXattr, type NameResolver } from '../image/acl.ts'
import { decompressed } from '../image/compression.ts'
import { parseIdTable } from '../image/tar-attrs.ts'
import { printableBytes, type TarEntry } from '../image/tar-format.ts'
import { readTar, type Segment } from '../image/tar-reader.ts'
import { applyXattrs, type XattrWrite, type Xattrs } from '../image/xattrs.ts'
import { TimeFixer, nodeTimes, type Times } from '../image/times.ts'

/** Present in the target from the first entry until the last attribute is set. */
export const INCOMPLETE_MARKER = '.si-incomplete'
/** Written inside the marker when extraction fails. */
const FAILURE_NOTE = 'error'
/** Directories the archive implies but does not list. */
const IMPLICIT_DIR_MODE = 0o755
/** Until their own attributes land at the end, created entries are private to us. */
const CREATE_DIR_MODE = 0o700
const CREATE_FILE_MODE = 0o600
const MARKER_MODE = 0o700
const CREATE_NODE_MODE = '600'
/** mkfifo and mknod return at once; a hung one must not hang the install. */
const TOOL_TIMEOUT_MS = 30_000
const ROOT_NAME = '.'
/** Files whose attributes are still being applied (each holds a descriptor). */
const MAX_BACKGROUND_JOBS = 64

export interface ExtractOptions {
  signal?: AbortSignal
  onEntry?(name: string): void
  /**
   * Leave TARGET/.si-incomplete in place on success: the caller has more to lay over
   * the tree (overrides) and calls completeTarget() itself.
   */
  keepMarker?: boolean
  /** An override laid over an extracted image: the archive's root attributes are ignored. */
  overlay?: boolean
}

export interface ExtractResult {
  entries: number
  /** Bytes of regular-file content written. */
  bytes: number
  /** Times extracted for the target root (for completeTarget after overlays). */
  rootTimes?: Times
}

function unsafe (name: string, why: string): never {
  throw new SiError('ERR_UNSAFE_ARCHIVE', `entry "${name}": ${why}`)
}

function errno (err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code
}

function fsPath (p: string): Buffer {
  return Buffer.from(p, 'latin1')
}

/** A byte string for messages: UTF-8 when it is, escaped bytes when not. */
function shown (p: string): string {
  return printableBytes(fsPath(p))
}

/** The path components of an archive path, or an ERR_UNSAFE_ARCHIVE if it could escape. */
function components (path: string, entry: string, what: string): string[] {
  if (path.includes('\0')) unsafe(entry, `${what} contains a NUL byte`)
  if (path.startsWith('/')) unsafe(entry, `${what} "${shown(path)}" is absolute`)
  const parts = path.split('/').filter(p => p !== '' && p !== '.')
  if (parts.includes('..')) unsafe(entry, `${what} "${shown(path)}" has a ".." component`)
  if (parts[0] === INCOMPLETE_MARKER) unsafe(entry, `${what} uses the reserved name ${INCOMPLETE_MARKER}`)
  return parts
}

function runNodeTool (tool: string, args: string[], entry: string): void {
  const r = spawnSync(tool, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: TOOL_TIMEOUT_MS })
  if (r.error !== undefined) {
    const why = errno(r.error) === 'ENOENT' ? `${tool} is not installed` : r.error.message
    throw new SiError(errno(r.error) === 'ENOENT' ? 'ERR_TOOL_MISSING' : 'ERR_TOOL_FAILED', `entry "${entry}": cannot run ${tool}: ${why}`, { cause: r.error })
  }
  if (r.status !== 0) {
    throw new SiError('ERR_TOOL_FAILED', `entry "${entry}": ${tool} failed (${r.status ?? r.signal}): ${r.stderr.toString().trim()}`)
  }
}

interface Attrs extends Times { mode: number; uid: number; gid: number }

function attrsOf (e: TarEntry): Attrs {
  return { mode: e.mode, uid: e.uid, gid: e.gid, mtimeNs: e.mtimeNs, atimeNs: e.atimeNs ?? e.mtimeNs }
}

interface PendingXattrs { xattrs?: Xattrs; aclAccess?: string; aclDefault?: string }

class Jail {
  /** Relative paths checked to be real directories (not symlinks) since their last change. */
  private readonly verified = new Set<string>()
  readonly dirs = new Map<string, Attrs>()
  private readonly xattrs = new Map<string, PendingXattrs>()
  readonly times = new TimeFixer()
  private readonly asRoot = process.getuid?.() === 0
  private readonly pending = new Set<Promise<void>>()
  private backgroundError: unknown
  private nodeSerial = 0

  constructor (readonly root: string, readonly marker: string) {}

  abs (rel: string): string {
    return rel === '' ? this.root : `${this.root}/${rel}`
  }

  /** Makes sure every parent of `parts` is a real directory inside the jail, creating missing ones. */
  async prepareParents (parts: string[], entry: string): Promise<void> {
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/')
      if (this.verified.has(rel)) continue
      const abs = fsPath(this.abs(rel))
      try {
        const st = await lstat(abs)
        if (st.isSymbolicLink()) unsafe(entry, `parent "${shown(rel)}" is a symlink`)
        if (!st.isDirectory()) throw new SiError('ERR_ARCHIVE', `entry "${entry}": parent "${shown(rel)}" is not a directory`)
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
        st = await lstat(fsPath(this.abs(rel)))
      } catch (err) {
        if (errno(err) === 'ENOENT') throw new SiError('ERR_ARCHIVE', `entry "${entry}": link target "${shown(parts.join('/'))}" does not exist`)
        throw err
      }
      const last = i === parts.length
      if (!last && st.isSymbolicLink()) unsafe(entry, `link target passes through symlink "${shown(rel)}"`)
      if (!last && !st.isDirectory()) throw new SiError('ERR_ARCHIVE', `entry "${entry}": "${shown(rel)}" is not a directory`)
      if (last && st.isDirectory()) throw new SiError('ERR_ARCHIVE', `entry "${entry}": cannot hard-link to directory "${shown(rel)}"`)
    }
  }

  /**
   * Removes whatever is at rel so the entry can be created fresh. An existing real
   * directory is kept when the new entry is one too; returns whether it was kept.
   */
  async clear (rel: string, entry: string, keepDirectory: boolean): Promise<boolean> {
    const abs = fsPath(this.abs(rel))
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
          throw new SiError('ERR_ARCHIVE', `entry "${entry}": would replace non-empty directory "${shown(rel)}"`)
        }
        throw err
      }
    } else {
      await unlink(abs)
    }
    this.forget(rel)
    return false
  }

  /** Whatever was recorded for a replaced path (and, for a directory, below it) is void. */
  private forget (rel: string): void {
    const prefix = `${rel}/`
    for (const p of this.verified) if (p === rel || p.startsWith(prefix)) this.verified.delete(p)
    for (const p of this.dirs.keys()) if (p === rel || p.startsWith(prefix)) this.dirs.delete(p)
    for (const p of this.xattrs.keys()) if (p === rel || p.startsWith(prefix)) this.xattrs.delete(p)
    this.times.forget(this.abs(rel))
    this.times.forgetUnder(this.abs(prefix))
  }

  noteXattrs (rel: string, e: TarEntry): void {
    if (e.xattrs === undefined && e.aclAccess === undefined && e.aclDefault === undefined) return
    this.xattrs.set(rel, { xattrs: e.xattrs, aclAccess: e.aclAccess, aclDefault: e.aclDefault })
  }

  async directory (rel: string, attrs: Attrs, entry: string): Promise<void> {
    if (rel !== '' && !(await this.clear(rel, entry, true))) await mkdir(fsPath(this.abs(rel)), CREATE_DIR_MODE)
    if (rel !== '') this.verified.add(rel)
    this.dirs.set(rel, attrs)
  }

  /** Creates a file, O_EXCL|O_NOFOLLOW, removing whatever held the path only if needed. */
  private async create (rel: string, entry: string): Promise<FileHandle> {
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW
    try {
      return await open(fsPath(this.abs(rel)), flags, CREATE_FILE_MODE)
    } catch (err) {
      // Fresh targets rarely hold anything: try first, clear on conflict. Whatever is
      // there (a device node, a FIFO, a symlink) is unlinked, never opened.
      if (errno(err) !== 'EEXIST' && errno(err) !== 'ELOOP') throw err
    }
    await this.clear(rel, entry, false)
    return await open(fsPath(this.abs(rel)), flags, CREATE_FILE_MODE)
  }

  async file (rel: string, e: TarEntry, body: AsyncGenerator<Segment>, entry: string): Promise<number> {
    const fh = await this.create(rel, entry)
    let written = 0
    try {
      for await (const { offset, data } of body) {
        for (let off = 0; off < data.length;) {
          const { bytesWritten } = await fh.write(data, off, data.length - off, offset + off)
          off += bytesWritten
        }
        written += data.length
      }
      // A sparse file's trailing hole, or a map that ends early, still gives the full size.
      if (e.sparse !== undefined) await fh.truncate(e.size)
    } catch (err) {
      await fh.close()
      throw err
    }
    await this.inBackground(this.finishFile(rel, fh, attrsOf(e)))
    return written
  }

  private async setTimes (rel: string, attrs: Times, set: (a: number, m: number) => Promise<void>): Promise<void> {
    const n = nodeTimes(attrs)
    await set(n.atime, n.mtime)
    this.times.add(this.abs(rel), attrs)
  }

  /** Attributes through the descriptor: no path is involved, so no later entry can interfere. */
  private async finishFile (rel: string, fh: FileHandle, attrs: Attrs): Promise<void> {
    try {
      // chown clears setuid/setgid, so the mode goes on after it.
      if (this.asRoot) await fh.chown(attrs.uid, attrs.gid)
      await fh.chmod(attrs.mode)
      await this.setTimes(rel, attrs, (a, m) => fh.utimes(a, m))
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

  async symlink (rel: string, attrs: Attrs, target: Buffer, entry: string): Promise<void> {
    await this.clear(rel, entry, false)
    const abs = fsPath(this.abs(rel))
    // The target is kept verbatim (absolute ones are normal in an OS image): it is never
    // followed here, only resolved later by the installed system.
    await symlink(target, abs)
    if (this.asRoot) await lchown(abs, attrs.uid, attrs.gid)
    await this.setTimes(rel, attrs, (a, m) => lutimes(abs, a, m))
  }

  async hardlink (rel: string, targetParts: string[], entry: string): Promise<void> {
    const target = targetParts.join('/')
    if (target === rel) throw new SiError('ERR_ARCHIVE', `entry "${entry}": hard link to itself`)
    await this.checkExisting(targetParts, entry)
    await this.clear(rel, entry, false)
    // link(2) does not follow a symlink target, so linking to one links the symlink itself.
    await link(fsPath(this.abs(target)), fsPath(this.abs(rel)))
  }

  /**
   * FIFOs and devices are made by tools (Node has neither mkfifo nor mknod) inside our
   * private directory under an ASCII name, then renamed into place: the tools never walk
   * a path the archive chose.
   */
  async node (rel: string, attrs: Attrs, e: TarEntry, entry: string): Promise<void> {
    await this.clear(rel, entry, false)
    const tmp = `${this.marker}/node-${this.nodeSerial++}`
    if (e.type === 'fifo') runNodeTool('mkfifo', ['-m', CREATE_NODE_MODE, tmp], entry)
    else runNodeTool('mknod', ['-m', CREATE_NODE_MODE, tmp, e.type === 'character-device' ? 'c' : 'b', String(e.devmajor ?? 0), String(e.devminor ?? 0)], entry)
    if (this.asRoot) await lchown(tmp, attrs.uid, attrs.gid)
    await chmod(tmp, attrs.mode)
    const abs = fsPath(this.abs(rel))
    await rename(tmp, abs)
    // By path, never by opening: opening a device node could act on the device.
    await this.setTimes(rel, attrs, (a, m) => lutimes(abs, a, m))
  }

  /** xattrs and ACLs for every entry, in one setfattr run; after owners and modes (chown clears capabilities). */
  async applyXattrs (): Promise<void> {
    if (this.xattrs.size === 0) return
    const resolve = await this.nameResolver()
    const writes: XattrWrite[] = []
    for (const [rel, p] of this.xattrs) {
      const all: Xattrs = new Map(p.xattrs ?? [])
      const entry = shown(rel) || ROOT_NAME
      try {
        if (p.aclAccess !== undefined) all.set(XATTR_ACL_ACCESS, aclTextToXattr(p.aclAccess, resolve))
        if (p.aclDefault !== undefined) all.set(XATTR_ACL_DEFAULT, aclTextToXattr(p.aclDefault, resolve))
      } catch (err) {
        throw new SiError('ERR_ARCHIVE', `entry "${entry}": ${(err as Error).message}`, { cause: err })
      }
      writes.push({ path: fsPath(this.abs(rel)), xattrs: all, entry })
    }
    await applyXattrs(writes)
  }

  /** ACL texts from other tars may name users: resolve them in the image's own tables. */
  private async nameResolver (): Promise<NameResolver> {
    const table = async (file: string): Promise<Map<string, number>> => {
      try {
        const p = fsPath(this.abs(`etc/${file}`))
        if (!(await lstat(p)).isFile()) return new Map()
        return parseIdTable(await readFile(p, 'utf8'))
      } catch { return new Map() }
    }
    const [users, groups] = await Promise.all([table('passwd'), table('group')])
    return (kind, name) => (kind === 'user' ? users : groups).get(name)
  }

  /** Directory attributes last and deepest first, so creating children cannot disturb them. */
  async finishDirectories (skipRoot: boolean): Promise<void> {
    const depth = (rel: string): number => rel === '' ? -1 : rel.split('/').length
    const order = [...this.dirs.keys()].sort((a, b) => depth(b) - depth(a))
    for (const rel of order) {
      if (rel === '' && skipRoot) continue
      const attrs = this.dirs.get(rel)!
      let fh
      try {
        fh = await open(fsPath(this.abs(rel)), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW)
      } catch (err) {
        if (errno(err) === 'ELOOP' || errno(err) === 'ENOTDIR') unsafe(shown(rel) || ROOT_NAME, 'directory was replaced by something else')
        throw err
      }
      try {
        if (this.asRoot) await fh.chown(attrs.uid, attrs.gid)
        await fh.chmod(attrs.mode)
        await this.setTimes(rel, attrs, (a, m) => fh.utimes(a, m))
      } finally {
        await fh.close()
      }
    }
  }
}

async function extractEntry (jail: Jail, e: TarEntry, body: () => AsyncGenerator<Segment>, overlay: boolean): Promise<{ name: string; bytes: number }> {
  const path = e.path.toString('latin1')
  const name = printableBytes(e.path) || ROOT_NAME
  const parts = components(path, name, 'path')
  const rel = parts.join('/')
  const attrs = attrsOf(e)
  if (rel === '' && e.type !== 'directory') unsafe(name, 'would replace the target directory')
  await jail.prepareParents(parts, name)

  switch (e.type) {
    case 'directory':
      if (rel === '' && overlay) return { name, bytes: 0 } // the image owns the root's attributes
      await jail.directory(rel, attrs, name)
      jail.noteXattrs(rel, e)
      return { name, bytes: 0 }
    case 'file': {
      const bytes = await jail.file(rel, e, body(), name)
      jail.noteXattrs(rel, e)
      return { name, bytes }
    }
    case 'symlink':
      if (e.linkpath === undefined || e.linkpath.length === 0) throw new SiError('ERR_ARCHIVE', `entry "${name}": symlink without a target`)
      if (e.linkpath.includes(0)) unsafe(name, 'symlink target contains a NUL byte')
      await jail.symlink(rel, attrs, e.linkpath, name)
      jail.noteXattrs(rel, e)
      return { name, bytes: 0 }
    case 'link': {
      const target = components((e.linkpath ?? Buffer.alloc(0)).toString('latin1'), name, 'hard link target')
      if (target.length === 0) unsafe(name, 'hard link to the target directory')
      await jail.hardlink(rel, target, name)
      return { name, bytes: 0 }
    }
    case 'fifo':
    case 'character-device':
    case 'block-device':
      await jail.node(rel, attrs, e, name)
      jail.noteXattrs(rel, e)
      return { name, bytes: 0 }
  }
}

/** Creates TARGET/.si-incomplete (a private directory): the target is not complete. */
export async function markIncomplete (root: string): Promise<string> {
  const marker = `${root}/${INCOMPLETE_MARKER}`
  try {
    const st = await lstat(marker)
    if (!st.isDirectory()) await rm(marker, { force: true, recursive: false })
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw err
  }
  await mkdir(marker, { mode: MARKER_MODE }).catch(err => { if (errno(err) !== 'EEXIST') throw err })
  await chmod(marker, MARKER_MODE)
  return marker
}

/**
 * Removes the marker and gives the root back the times the image recorded (removing
 * the marker changed them).
 */
export async function completeTarget (target: string, rootTimes?: Times): Promise<void> {
  const root = await realpath(target)
  await rm(`${root}/${INCOMPLETE_MARKER}`, { recursive: true, force: true })
  if (rootTimes === undefined) return
  const n = nodeTimes(rootTimes)
  await utimes(root, n.atime, n.mtime)
  const fixer = new TimeFixer()
  fixer.add(Buffer.from(root).toString('latin1'), rootTimes)
  await fixer.apply()
}

/** Extracts the tar stream `input` (plain, gzip or zstd) into the existing directory `target`. */
export async function extractTar (input: Readable | AsyncIterable<Buffer>, target: string, opts: ExtractOptions = {}): Promise<ExtractResult> {
  const destroyInput = (): void => {
    const s = input as Readable
    if (typeof s.destroy === 'function') { s.on?.('error', () => {}); s.destroy() }
  }
  let root: string
  try {
    root = await realpath(target)
    if (!(await lstat(root)).isDirectory()) throw new Error('not a directory')
  } catch (err) {
    destroyInput()
    throw new SiError('ERR_INVALID_ARGUMENT', `extraction target ${target} is not a directory`, { cause: err })
  }
  const marker = await markIncomplete(root)
  // The jail works on byte strings; realpath gave UTF-8.
  const jail = new Jail(Buffer.from(root).toString('latin1'), marker)
  const aborted = new Promise<never>((_resolve, reject) => {
    const onAbort = (): void => reject(new SiError('ERR_ABORTED', 'extraction aborted'))
    if (opts.signal?.aborted === true) onAbort()
    opts.signal?.addEventListener('abort', onAbort, { once: true })
  })
  aborted.catch(() => {})
  // gzip and zstd payloads are recognised by their magic bytes.
  const members = readTar(decompressed(input as AsyncIterable<Buffer>))

  let entries = 0
  let bytes = 0
  let rootTimes: Times | undefined
  try {
    for (;;) {
      const next = await Promise.race([members.next(), aborted])
      if (next.done === true) break
      const { entry, body } = next.value
      if (entry.path.length === 0 && entry.type === 'directory' && opts.overlay !== true) rootTimes = { atimeNs: entry.atimeNs ?? entry.mtimeNs, mtimeNs: entry.mtimeNs }
      const done = await Promise.race([extractEntry(jail, entry, body, opts.overlay === true), aborted])
      entries++
      bytes += done.bytes
      opts.onEntry?.(done.name)
    }
    await jail.settle()
    await jail.applyXattrs()
    await jail.finishDirectories(opts.overlay === true)
    await jail.times.apply()
    if (opts.keepMarker !== true) await completeTarget(root, rootTimes)
    return { entries, bytes, ...(rootTimes !== undefined ? { rootTimes } : {}) }
  } catch (err) {
    await jail.settle().catch(() => {})
    destroyInput()
    await members.return(undefined).catch(() => {})
    const failure = isSiError(err) ? err : new SiError('ERR_ARCHIVE', `extraction failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
    await writeFile(`${marker}/${FAILURE_NOTE}`, `${failure.code}: ${failure.message}\n`).catch(() => {})
    throw failure
  }
}
