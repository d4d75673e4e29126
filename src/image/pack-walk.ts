// Turns a directory tree into a POSIX (pax) tar stream carrying every attribute the
// extractor restores: numeric owners of any size, all 12 mode bits, mtime and atime to
// the nanosecond, symlinks verbatim, hard links as links, FIFOs and device nodes, xattrs
// with binary values, POSIX ACLs, sparse files as GNU sparse 1.0, names as raw bytes.
// GNU tar (`--xattrs --acls`) reads the result. Entries come in byte-sorted order so the
// same tree always gives the same archive (and so the same torrent), whatever the locale.
//
// The walk runs in the pack worker (pack-worker.ts) and makes only synchronous calls: a
// file costs its syscalls (open, fstat, read, close: the type came with the listing) and
// nothing more, where each asynchronous call was a thread-pool round trip that cost more
// than the syscall. File content is read straight into the sink's batch, never into a
// buffer of its own.
//
// The tree is traversed once. The listing comes first (every directory listed once, in
// archive order, its times noted before it is listed); then getfattr reads the xattrs of
// the listed paths on another core, a batch at a time, ahead of the walk that writes the
// entries, which waits for a batch only if it catches up with it.
import { closeSync, constants as fsc, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type BigIntStats, type Dirent } from 'node:fs'
import { lstat, readFile } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT, aclXattrToText } from './acl.ts'
import { AtimeKeeper } from './atime-keeper.ts'
import { findDataSegments } from './holes.ts'
import { splitRdev } from './tar-attrs.ts'
import { BLOCK, encodeHeader, encodeSparseMap, padding, printableBytes, type TarEntry } from './tar-format.ts'
import { XattrBatches } from './xattrs.ts'

/** Smallest file worth looking for holes in: one page. */
const HOLE_BLOCK = 4096
/** The block size the unpacked size is counted in (ext4's, xfs's default). */
const DISK_BLOCK = 4096
/** Symlink targets up to this long live in the inode (ext4's "fast" symlinks). */
const INLINE_SYMLINK_BYTES = 59
const ZERO_BLOCK = Buffer.alloc(BLOCK)
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK)
const SLASH = Buffer.from('/')
/** Reading a file must not change the source's atime (nor the atime we record). */
const NOATIME = fsc.O_NOATIME ?? 0
// O_NOFOLLOW and O_NONBLOCK: if a path was swapped for a symlink or a FIFO since lstat,
// fail instead of archiving something else or blocking forever.
const OPEN_SOURCE_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK

/** Where the tar bytes go: batches the pack worker hands to the main thread. */
export interface TarSink {
  /** Appends a copy of `bytes`. */
  write(bytes: Uint8Array): void
  /** The free end of the current batch (at least one byte), to read file content into. */
  room(): Buffer
  /** `n` bytes of room() were filled. */
  commit(n: number): void
}

export interface WalkOptions {
  /** Read xattrs and ACLs with getfattr (default true; needs the `attr` package). */
  xattrs?: boolean
  /** Checked between entries and between reads: true stops the walk with ERR_ABORTED. */
  aborted?(): boolean
}

export interface PackResult {
  /** Bytes of tar written. */
  bytes: number
  entries: number
  /**
   * Space the tree needs on disk, estimated from its content alone (so the same tree
   * gives the same figure, and the same torrent, wherever it lives): file data in whole
   * blocks, a block per directory and per symlink too long to live in its inode.
   */
  unpackedBytes: number
  /** Paths (relative) that tar cannot carry, such as sockets. */
  skipped: string[]
}

type OwnerNames = Map<number, string>

/** Owner names come from the image's own files: the host's users mean nothing to it. */
async function readOwnerNames (srcDir: string, file: string): Promise<OwnerNames> {
  const names: OwnerNames = new Map()
  try {
    const path = `${srcDir}/etc/${file}`
    if (!(await lstat(path)).isFile()) return names
    for (const line of (await readFile(path, 'utf8')).split('\n')) {
      const [name, , id] = line.split(':')
      const n = Number(id)
      if (name && Number.isSafeInteger(n) && !names.has(n)) names.set(n, name)
    }
  } catch {
    // No passwd/group in the tree: names are only a hint, numeric ids are authoritative.
  }
  return names
}

function throwIfAborted (opts: WalkOptions): void {
  if (opts.aborted?.() === true) throw new SiError('ERR_ABORTED', 'packing aborted')
}

/** Opens a listed path for reading without following a symlink swapped in meanwhile. */
function openSource (rel: Buffer, abs: Buffer): number {
  try {
    try {
      return openSync(abs, OPEN_SOURCE_FLAGS | NOATIME)
    } catch (err) {
      // O_NOATIME needs ownership or CAP_FOWNER; without it the read still has to happen.
      if ((err as NodeJS.ErrnoException).code !== 'EPERM' || NOATIME === 0) throw err
      return openSync(abs, OPEN_SOURCE_FLAGS)
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new SiError('ERR_SOURCE_CHANGED', `${printableBytes(rel)} was replaced by a symlink while packing`, { cause: err })
    throw err
  }
}

/** Fewer blocks allocated than the size needs: the file has holes worth keeping. */
function hasHoles (st: BigIntStats): boolean {
  return st.isFile() && st.size >= BigInt(HOLE_BLOCK) && st.blocks * 512n < st.size
}

/** One member of the listing, in archive order. */
interface Listed {
  abs: Buffer
  /** A view of `abs` past the root and its slash; empty for the root. */
  rel: Buffer
  /** A directory: its lstat, taken before it was listed (so its atime is the one found). */
  dir?: BigIntStats
  /** The listing said a regular file: opened and fstat'ed, no lstat of its own. */
  file: boolean
}

function byName (a: Dirent<Buffer>, b: Dirent<Buffer>): number {
  return Buffer.compare(a.name, b.name)
}

/**
 * Every path under `root`, in archive order (byte-sorted, each directory before what it
 * holds). Each directory's times are noted before it is listed, since listing moves its
 * atime.
 */
function listTree (root: Buffer, keeper: AtimeKeeper, opts: WalkOptions): Listed[] {
  const rootStat = lstatSync(root, { bigint: true })
  keeper.note(root, rootStat)
  const out: Listed[] = [{ abs: root, rel: root.subarray(root.length), dir: rootStat, file: false }]
  const relStart = root.length + 1
  const listDir = (dirAbs: Buffer): void => {
    throwIfAborted(opts)
    const children = readdirSync(dirAbs, { withFileTypes: true, encoding: 'buffer' })
    children.sort(byName)
    for (const d of children) {
      const abs = Buffer.concat([dirAbs, SLASH, d.name])
      const rel = abs.subarray(relStart)
      if (d.isDirectory()) {
        const st = lstatSync(abs, { bigint: true })
        keeper.note(abs, st)
        if (st.isDirectory()) {
          out.push({ abs, rel, dir: st, file: false })
          listDir(abs)
          continue
        }
      }
      out.push({ abs, rel, file: d.isFile() })
    }
  }
  listDir(root)
  return out
}

class Walker {
  readonly skipped: string[] = []
  entries = 0
  bytes = 0
  unpackedBytes = 0
  private readonly firstPathOfInode = new Map<string, Buffer>()

  constructor (
    private readonly sink: TarSink,
    private readonly users: OwnerNames,
    private readonly groups: OwnerNames,
    private readonly xattrs: XattrBatches | undefined,
    private readonly keeper: AtimeKeeper,
    private readonly opts: WalkOptions
  ) {}

  private throwIfAborted (): void {
    throwIfAborted(this.opts)
  }

  private write (buf: Uint8Array): void {
    if (buf.length === 0) return
    this.bytes += buf.length
    this.sink.write(buf)
  }

  private baseEntry (rel: Buffer, st: BigIntStats): TarEntry {
    const uid = Number(st.uid)
    const gid = Number(st.gid)
    const e: TarEntry = {
      path: rel,
      type: 'file',
      mode: Number(st.mode & 0o7777n),
      uid,
      gid,
      mtimeNs: st.mtimeNs,
      atimeNs: st.atimeNs,
      size: 0
    }
    const uname = this.users.get(uid)
    const gname = this.groups.get(gid)
    if (uname !== undefined) e.uname = uname
    if (gname !== undefined) e.gname = gname
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      const { major, minor } = splitRdev(st.rdev)
      e.devmajor = major
      e.devminor = minor
    }
    const x = this.xattrs?.of(rel)
    if (x !== undefined) {
      for (const [name, value] of x) {
        if (name === XATTR_ACL_ACCESS) e.aclAccess = aclXattrToText(value)
        else if (name === XATTR_ACL_DEFAULT) e.aclDefault = aclXattrToText(value)
        else (e.xattrs ??= new Map()).set(name, value)
      }
    }
    return e
  }

  /** Writes the listed entries in order, then the end of the archive. */
  async addAll (listed: Listed[]): Promise<void> {
    for (let i = 0; i < listed.length; i++) {
      this.throwIfAborted()
      // Only waiting for xattrs and a sparse file's holes are asynchronous steps.
      if (this.xattrs !== undefined && !this.xattrs.hasRead(i)) await this.xattrs.readPast(i)
      const { abs, rel, dir, file } = listed[i]
      if (dir !== undefined) this.addDirectory(rel, dir)
      else if (file) await this.addListedFile(rel, abs)
      else await this.addOther(rel, abs)
    }
    this.write(END_OF_ARCHIVE)
  }

  private addDirectory (rel: Buffer, st: BigIntStats): void {
    this.write(encodeHeader({ ...this.baseEntry(rel, st), type: 'directory' }))
    this.entries++
    this.unpackedBytes += DISK_BLOCK
  }

  /** A regular file by the listing: what is opened is what is archived, fstat says what it is. */
  private async addListedFile (rel: Buffer, abs: Buffer): Promise<void> {
    const fd = openSource(rel, abs)
    try {
      const st = fstatSync(fd, { bigint: true })
      if (!st.isFile()) throw new SiError('ERR_SOURCE_CHANGED', `${printableBytes(rel)} was replaced while packing`)
      const e = this.baseEntry(rel, st)
      if (this.addedAsLink(rel, st, e)) return
      if (hasHoles(st)) await this.addSparseFile(rel, e, st, fd)
      else this.addDenseFile(rel, e, st, fd)
      this.entries++
    } finally {
      closeSync(fd)
    }
  }

  /** Anything else the listing named: its own lstat decides. */
  private async addOther (rel: Buffer, abs: Buffer): Promise<void> {
    const st = lstatSync(abs, { bigint: true })
    this.keeper.note(abs, st)
    if (st.isDirectory()) throw new SiError('ERR_SOURCE_CHANGED', `${printableBytes(rel)} became a directory while packing`)
    if (st.isSocket()) {
      this.skipped.push(printableBytes(rel))
      return
    }
    // Listed as something else, or of a type the listing could not tell.
    if (st.isFile()) {
      await this.addListedFile(rel, abs)
      return
    }
    const e = this.baseEntry(rel, st)
    if (this.addedAsLink(rel, st, e)) return
    if (st.isSymbolicLink()) {
      const target = readlinkSync(abs, { encoding: 'buffer' })
      this.write(encodeHeader({ ...e, type: 'symlink', linkpath: target }))
      if (target.length > INLINE_SYMLINK_BYTES) this.countData(target.length)
    } else if (st.isFIFO()) {
      this.write(encodeHeader({ ...e, type: 'fifo' }))
    } else if (st.isCharacterDevice()) {
      this.write(encodeHeader({ ...e, type: 'character-device' }))
    } else if (st.isBlockDevice()) {
      this.write(encodeHeader({ ...e, type: 'block-device' }))
    } else {
      this.skipped.push(printableBytes(rel))
      return
    }
    this.entries++
  }

  /** A second path of an inode already archived: a link member. */
  private addedAsLink (rel: Buffer, st: BigIntStats, e: TarEntry): boolean {
    if (st.nlink <= 1n) return false
    const key = `${st.dev}:${st.ino}`
    const first = this.firstPathOfInode.get(key)
    if (first === undefined) {
      this.firstPathOfInode.set(key, rel)
      return false
    }
    // A link member carries no xattrs of its own: they belong to the inode.
    this.write(encodeHeader({ ...e, type: 'link', linkpath: first, xattrs: undefined, aclAccess: undefined, aclDefault: undefined }))
    this.entries++
    return true
  }

  /** Data bytes of a file, or a symlink's target, as whole disk blocks. */
  private countData (bytes: number): void {
    this.unpackedBytes += Math.ceil(bytes / DISK_BLOCK) * DISK_BLOCK
  }

  private addDenseFile (rel: Buffer, e: TarEntry, st: BigIntStats, fd: number): void {
    const size = Number(st.size)
    this.write(encodeHeader({ ...e, size }))
    this.copy(fd, rel, 0, size, size, true)
    this.countData(size)
    this.write(ZERO_BLOCK.subarray(0, padding(size)))
  }

  /**
   * Copies `length` bytes at `offset` of the file into the sink, straight into its batch.
   * With `toEnd`, the range ends the file and the file must end there: each read asks
   * for one byte more than is left, so a short read proves the end without a read of
   * its own, and a byte too many is a file that grew.
   */
  private copy (fd: number, rel: Buffer, offset: number, length: number, size: number, toEnd: boolean): void {
    let done = 0
    for (;;) {
      this.throwIfAborted()
      const left = length - done
      if (left === 0 && !toEnd) return
      const room = this.sink.room()
      const want = Math.min(room.length, toEnd ? left + 1 : left)
      const n = readSync(fd, room, 0, want, offset + done)
      if (n > left) throw new SiError('ERR_SOURCE_CHANGED', `${printableBytes(rel)} grew while packing (more than ${size} bytes)`)
      this.sink.commit(n)
      this.bytes += n
      done += n
      if (n === 0) {
        if (done < length) throw new SiError('ERR_SOURCE_CHANGED', `${printableBytes(rel)} shrank while packing (${offset + done} of ${size} bytes read)`)
        return
      }
      if (toEnd && done === length && n < want) return
    }
  }

  /** A file with holes: its map first (GNU sparse 1.0), then its data segments. */
  private async addSparseFile (rel: Buffer, e: TarEntry, st: BigIntStats, fd: number): Promise<void> {
    const size = Number(st.size)
    const segments = await findDataSegments(fd, size, printableBytes(rel))
    const sparse = segments.length !== 1 || segments[0][0] !== 0 || segments[0][1] !== size
    this.write(encodeHeader({ ...e, size, ...(sparse ? { sparse: segments } : {}) }))
    let stored = 0
    if (sparse) {
      const map = encodeSparseMap(segments)
      this.write(map)
      stored += map.length
    }
    for (const [offset, length] of segments) {
      this.copy(fd, rel, offset, length, size, false)
      stored += length
      this.countData(length)
    }
    // Nothing past the size: the file did not grow while it was read.
    this.copy(fd, rel, size, 0, size, true)
    this.write(ZERO_BLOCK.subarray(0, padding(stored)))
  }
}

/**
 * Writes the tree at `root` (a real path to a directory) as a tar archive into `sink`.
 * Whatever it lists or reads keeps its atime (AtimeKeeper), even when it fails.
 */
export async function walkTree (root: string, sink: TarSink, opts: WalkOptions = {}): Promise<PackResult> {
  const keeper = new AtimeKeeper()
  let xattrs: XattrBatches | undefined
  try {
    const [users, groups] = await Promise.all([readOwnerNames(root, 'passwd'), readOwnerNames(root, 'group')])
    const listed = listTree(Buffer.from(root), keeper, opts)
    if (opts.xattrs !== false) xattrs = new XattrBatches(root, listed.map(l => l.rel))
    const walker = new Walker(sink, users, groups, xattrs, keeper, opts)
    await walker.addAll(listed)
    return { bytes: walker.bytes, entries: walker.entries, unpackedBytes: walker.unpackedBytes, skipped: walker.skipped }
  } finally {
    xattrs?.stop()
    await keeper.restore({ blocking: true })
  }
}
