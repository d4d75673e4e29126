// The target directory as a jail, for an archive treated as hostile. Every call here is
// synchronous: the jail runs inside the extraction worker, where a blocking syscall
// holds up nobody, and a file costs its syscalls and nothing more (the asynchronous
// version paid a thread-pool round trip for each of them, eight per file).
//
// Nothing is ever written through a symlink: parents are checked component by
// component with lstat, existing entries are unlinked (never opened), files are created
// O_EXCL|O_NOFOLLOW, device nodes are made inside our private directory and renamed
// into place, and directory attributes are applied through O_NOFOLLOW handles at the end.
// A target left half-extracted by an earlier run is fine: whatever is in the way of an
// entry is replaced, never written into.
import { spawnSync } from 'node:child_process'
import {
  chmodSync, closeSync, constants as fsc, fchmodSync, fchownSync, ftruncateSync, futimesSync, lchownSync, linkSync, lstatSync,
  lutimesSync, mkdirSync, openSync, readFileSync, renameSync, rmdirSync, symlinkSync, unlinkSync, writeSync
} from 'node:fs'
import { SiError } from '../errors.ts'
import { XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT, aclTextToXattr, type NameResolver } from '../image/acl.ts'
import { parseIdTable } from '../image/tar-attrs.ts'
import { printableBytes } from '../image/tar-format.ts'
import { TimeFixer, nodeTimes, type Times } from '../image/times.ts'
import { applyXattrs, type XattrWrite, type Xattrs } from '../image/xattrs.ts'
import type { EntryAttrs, EntryXattrs } from './extract-protocol.ts'

/** Directories the archive implies but does not list. */
const IMPLICIT_DIR_MODE = 0o755
/** Until their own attributes land at the end, created entries are private to us. */
const CREATE_DIR_MODE = 0o700
const CREATE_FILE_MODE = 0o600
const CREATE_NODE_MODE = '600'
/** mkfifo and mknod return at once; a hung one must not hang the install. */
const TOOL_TIMEOUT_MS = 30_000
const ROOT_NAME = '.'
/**
 * Exact times wait for a batched run of the time fixer; past this many entries they are
 * applied at once, so that memory does not grow with the image. (Only files, links and
 * nodes wait here: nothing touches them again. Directories get theirs at the end.)
 */
export const TIME_FIXES_PER_RUN = 8192
const CREATE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW
const DIRECTORY_FLAGS = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW

export function unsafe (name: string, why: string): never {
  throw new SiError('ERR_UNSAFE_ARCHIVE', `entry "${name}": ${why}`)
}

export function errno (err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code
}

function fsPath (p: string): Buffer {
  return Buffer.from(p, 'latin1')
}

/** A byte string for messages: UTF-8 when it is, escaped bytes when not. */
export function shown (p: string): string {
  return printableBytes(fsPath(p))
}

function parentOf (rel: string): string {
  const slash = rel.lastIndexOf('/')
  return slash < 0 ? '' : rel.slice(0, slash)
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

/** The file being written: its content may span several batches. */
interface OpenFile { rel: string; fd: number; attrs: EntryAttrs; size: number; sparse: boolean }

export class Jail {
  /** Relative paths checked to be real directories (not symlinks) since their last change. */
  private readonly verified = new Set<string>([''])
  private readonly dirs = new Map<string, EntryAttrs>()
  private readonly xattrs = new Map<string, EntryXattrs>()
  private readonly times = new TimeFixer()
  private readonly asRoot = process.getuid?.() === 0
  private nodeSerial = 0
  private current: OpenFile | undefined

  constructor (readonly root: string, readonly marker: string, private readonly timeFixesPerRun = TIME_FIXES_PER_RUN) {}

  private abs (rel: string): Buffer {
    return fsPath(rel === '' ? this.root : `${this.root}/${rel}`)
  }

  /**
   * Makes sure every parent of `rel` is a real directory inside the jail, creating
   * missing ones. A verified parent implies verified ancestors: replacing a directory
   * forgets everything below it.
   */
  private prepareParents (rel: string, entry: string): void {
    const parent = parentOf(rel)
    if (this.verified.has(parent)) return
    const parts = parent.split('/')
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/')
      if (this.verified.has(dir)) continue
      const abs = this.abs(dir)
      const st = lstatSync(abs, { throwIfNoEntry: false })
      if (st === undefined) mkdirSync(abs, IMPLICIT_DIR_MODE)
      else if (st.isSymbolicLink()) unsafe(entry, `parent "${shown(dir)}" is a symlink`)
      else if (!st.isDirectory()) throw new SiError('ERR_ARCHIVE', `entry "${entry}": parent "${shown(dir)}" is not a directory`)
      this.verified.add(dir)
    }
  }

  /** Checks an existing path (a hard link's target) without creating or following anything. */
  private checkExisting (target: string, entry: string): void {
    const parts = target.split('/')
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i).join('/')
      const last = i === parts.length
      if (!last && this.verified.has(rel)) continue
      const st = lstatSync(this.abs(rel), { throwIfNoEntry: false })
      if (st === undefined) throw new SiError('ERR_ARCHIVE', `entry "${entry}": link target "${shown(target)}" does not exist`)
      if (!last && st.isSymbolicLink()) unsafe(entry, `link target passes through symlink "${shown(rel)}"`)
      if (!last && !st.isDirectory()) throw new SiError('ERR_ARCHIVE', `entry "${entry}": "${shown(rel)}" is not a directory`)
      if (last && st.isDirectory()) throw new SiError('ERR_ARCHIVE', `entry "${entry}": cannot hard-link to directory "${shown(rel)}"`)
    }
  }

  /**
   * Removes whatever is at rel so the entry can be created fresh. An existing real
   * directory is kept when the new entry is one too; returns whether it was kept.
   */
  private clear (rel: string, entry: string, keepDirectory: boolean): boolean {
    const abs = this.abs(rel)
    const st = lstatSync(abs, { throwIfNoEntry: false })
    if (st === undefined) return false
    if (st.isDirectory()) {
      if (keepDirectory) return true
      try {
        rmdirSync(abs)
      } catch (err) {
        if (errno(err) === 'ENOTEMPTY' || errno(err) === 'EEXIST') {
          throw new SiError('ERR_ARCHIVE', `entry "${entry}": would replace non-empty directory "${shown(rel)}"`)
        }
        throw err
      }
      this.forgetTree(rel)
    } else {
      unlinkSync(abs)
      this.forget(rel)
    }
    return false
  }

  /** Whatever was recorded for a replaced path is void. */
  private forget (rel: string): void {
    this.verified.delete(rel)
    this.dirs.delete(rel)
    this.xattrs.delete(rel)
    this.times.forget(this.abs(rel).toString('latin1'))
  }

  /** A removed directory: it was empty, but what was recorded below it goes too (rare, so a scan). */
  private forgetTree (rel: string): void {
    this.forget(rel)
    const prefix = `${rel}/`
    for (const p of this.verified) if (p.startsWith(prefix)) this.verified.delete(p)
    for (const p of this.dirs.keys()) if (p.startsWith(prefix)) this.dirs.delete(p)
    for (const p of this.xattrs.keys()) if (p.startsWith(prefix)) this.xattrs.delete(p)
    this.times.forgetUnder(this.abs(prefix).toString('latin1'))
  }

  private noteXattrs (rel: string, x: EntryXattrs | undefined): void {
    if (x !== undefined) this.xattrs.set(rel, x)
  }

  private setTimes (rel: string, t: Times, set: (atime: number, mtime: number) => void): void {
    const n = nodeTimes(t)
    set(n.atime, n.mtime)
    this.times.add(this.abs(rel).toString('latin1'), t)
  }

  directory (rel: string, name: string, attrs: EntryAttrs, x: EntryXattrs | undefined): void {
    this.prepareParents(rel, name)
    if (rel !== '') {
      try {
        mkdirSync(this.abs(rel), CREATE_DIR_MODE)
      } catch (err) {
        if (errno(err) !== 'EEXIST') throw err
        if (!this.clear(rel, name, true)) mkdirSync(this.abs(rel), CREATE_DIR_MODE)
      }
      this.verified.add(rel)
    }
    this.dirs.set(rel, attrs)
    this.noteXattrs(rel, x)
  }

  /** Creates a file, O_EXCL|O_NOFOLLOW, removing whatever held the path only if needed. */
  beginFile (rel: string, name: string, attrs: EntryAttrs, x: EntryXattrs | undefined, size: number, sparse: boolean): void {
    if (this.current !== undefined) throw new SiError('ERR_ARCHIVE', `entry "${name}": previous file not finished`)
    this.prepareParents(rel, name)
    let fd: number
    try {
      fd = openSync(this.abs(rel), CREATE_FLAGS, CREATE_FILE_MODE)
    } catch (err) {
      // Fresh targets rarely hold anything: try first, clear on conflict. Whatever is
      // there (a device node, a FIFO, a symlink) is unlinked, never opened.
      if (errno(err) !== 'EEXIST' && errno(err) !== 'ELOOP') throw err
      this.clear(rel, name, false)
      fd = openSync(this.abs(rel), CREATE_FLAGS, CREATE_FILE_MODE)
    }
    this.current = { rel, fd, attrs, size, sparse }
    this.noteXattrs(rel, x)
  }

  write (offset: number, data: Uint8Array): void {
    const f = this.current
    if (f === undefined) throw new SiError('ERR_ARCHIVE', 'file data outside a file')
    for (let done = 0; done < data.length;) {
      done += writeSync(f.fd, data, done, data.length - done, offset + done)
    }
  }

  /** Attributes through the descriptor: no path is involved, so no later entry can interfere. */
  endFile (): void {
    const f = this.current
    if (f === undefined) throw new SiError('ERR_ARCHIVE', 'end of a file that was not begun')
    this.current = undefined
    try {
      // A sparse file's trailing hole, or a map that ends early, still gives the full size.
      if (f.sparse) ftruncateSync(f.fd, f.size)
      // chown clears setuid/setgid, so the mode goes on after it.
      if (this.asRoot) fchownSync(f.fd, f.attrs.uid, f.attrs.gid)
      fchmodSync(f.fd, f.attrs.mode)
      this.setTimes(f.rel, f.attrs, (a, m) => futimesSync(f.fd, a, m))
    } finally {
      closeSync(f.fd)
    }
  }

  get fileOpen (): boolean { return this.current !== undefined }

  /** Closes a file left open by a failure or an abort. */
  closeOpenFile (): void {
    if (this.current === undefined) return
    try { closeSync(this.current.fd) } catch { /* already failing */ }
    this.current = undefined
  }

  symlink (rel: string, name: string, attrs: EntryAttrs, x: EntryXattrs | undefined, target: string): void {
    this.prepareParents(rel, name)
    this.clear(rel, name, false)
    const abs = this.abs(rel)
    // The target is kept verbatim (absolute ones are normal in an OS image): it is never
    // followed here, only resolved later by the installed system.
    symlinkSync(fsPath(target), abs)
    if (this.asRoot) lchownSync(abs, attrs.uid, attrs.gid)
    this.setTimes(rel, attrs, (a, m) => lutimesSync(abs, a, m))
    this.noteXattrs(rel, x)
  }

  hardlink (rel: string, name: string, target: string): void {
    if (target === rel) throw new SiError('ERR_ARCHIVE', `entry "${name}": hard link to itself`)
    this.prepareParents(rel, name)
    this.checkExisting(target, name)
    this.clear(rel, name, false)
    // link(2) does not follow a symlink target, so linking to one links the symlink itself.
    linkSync(this.abs(target), this.abs(rel))
  }

  /**
   * FIFOs and devices are made by tools (Node has neither mkfifo nor mknod) inside our
   * private directory under an ASCII name, then renamed into place: the tools never walk
   * a path the archive chose.
   */
  node (rel: string, name: string, kind: 'fifo' | 'character-device' | 'block-device', attrs: EntryAttrs, x: EntryXattrs | undefined, major: number, minor: number): void {
    this.prepareParents(rel, name)
    this.clear(rel, name, false)
    const tmp = `${this.marker}/node-${this.nodeSerial++}`
    if (kind === 'fifo') runNodeTool('mkfifo', ['-m', CREATE_NODE_MODE, tmp], name)
    else runNodeTool('mknod', ['-m', CREATE_NODE_MODE, tmp, kind === 'character-device' ? 'c' : 'b', String(major), String(minor)], name)
    if (this.asRoot) lchownSync(tmp, attrs.uid, attrs.gid)
    chmodSync(tmp, attrs.mode)
    const abs = this.abs(rel)
    renameSync(tmp, abs)
    // By path, never by opening: opening a device node could act on the device.
    this.setTimes(rel, attrs, (a, m) => lutimesSync(abs, a, m))
    this.noteXattrs(rel, x)
  }

  /** Whether enough exact times wait that they should be applied now (see flushTimes). */
  get timesDue (): boolean { return this.times.pending >= this.timeFixesPerRun }

  /** Exact times that wait now. */
  get timesWaiting (): number { return this.times.pending }

  /**
   * Applies the exact times that wait, between batches. A file may be open: its own times
   * are set when it ends, and the paths that wait are ones the jail made and checked.
   */
  async flushTimes (): Promise<void> {
    await this.times.apply()
  }

  /** After the last entry: xattrs and ACLs, then directory attributes, then exact times. */
  async finish (skipRoot: boolean): Promise<void> {
    await this.applyXattrs()
    this.finishDirectories(skipRoot)
    await this.times.apply()
  }

  /** xattrs and ACLs for every entry, in one setfattr run; after owners and modes (chown clears capabilities). */
  private async applyXattrs (): Promise<void> {
    if (this.xattrs.size === 0) return
    const resolve = this.nameResolver()
    const writes: XattrWrite[] = []
    for (const [rel, p] of this.xattrs) {
      const all: Xattrs = new Map((p.xattrs ?? []).map(([k, v]) => [k, Buffer.from(v.buffer, v.byteOffset, v.byteLength)]))
      const entry = shown(rel) || ROOT_NAME
      try {
        if (p.aclAccess !== undefined) all.set(XATTR_ACL_ACCESS, aclTextToXattr(p.aclAccess, resolve))
        if (p.aclDefault !== undefined) all.set(XATTR_ACL_DEFAULT, aclTextToXattr(p.aclDefault, resolve))
      } catch (err) {
        throw new SiError('ERR_ARCHIVE', `entry "${entry}": ${(err as Error).message}`, { cause: err })
      }
      writes.push({ path: this.abs(rel), xattrs: all, entry })
    }
    await applyXattrs(writes)
  }

  /** ACL texts from other tars may name users: resolve them in the image's own tables. */
  private nameResolver (): NameResolver {
    const table = (file: string): Map<string, number> => {
      try {
        const p = this.abs(`etc/${file}`)
        if (lstatSync(p, { throwIfNoEntry: false })?.isFile() !== true) return new Map()
        return parseIdTable(readFileSync(p, 'utf8'))
      } catch { return new Map() }
    }
    const users = table('passwd')
    const groups = table('group')
    return (kind, name) => (kind === 'user' ? users : groups).get(name)
  }

  /** Directory attributes last and deepest first, so creating children cannot disturb them. */
  private finishDirectories (skipRoot: boolean): void {
    const depth = (rel: string): number => rel === '' ? -1 : rel.split('/').length
    const order = [...this.dirs.keys()].sort((a, b) => depth(b) - depth(a))
    for (const rel of order) {
      if (rel === '' && skipRoot) continue
      const attrs = this.dirs.get(rel)!
      let fd
      try {
        fd = openSync(this.abs(rel), DIRECTORY_FLAGS)
      } catch (err) {
        if (errno(err) === 'ELOOP' || errno(err) === 'ENOTDIR') unsafe(shown(rel) || ROOT_NAME, 'directory was replaced by something else')
        throw err
      }
      try {
        if (this.asRoot) fchownSync(fd, attrs.uid, attrs.gid)
        fchmodSync(fd, attrs.mode)
        this.setTimes(rel, attrs, (a, m) => futimesSync(fd, a, m))
      } finally {
        closeSync(fd)
      }
    }
  }
}
