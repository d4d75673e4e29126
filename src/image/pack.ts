// Turns a directory tree into a POSIX (pax) tar stream carrying every attribute the
// extractor restores: numeric owners of any size, all 12 mode bits, mtime and atime to
// the nanosecond, symlinks verbatim, hard links as links, FIFOs and device nodes, xattrs
// with binary values, POSIX ACLs, sparse files as GNU sparse 1.0, names as raw bytes.
// GNU tar (`--xattrs --acls`) reads the result. Entries come in byte-sorted order so the
// same tree always gives the same archive (and so the same torrent), whatever the locale.
import { once } from 'node:events'
import { closeSync, constants as fsc, createWriteStream, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type BigIntStats } from 'node:fs'
import { lstat, open, readFile, realpath, unlink, type FileHandle } from 'node:fs/promises'
import type { Writable } from 'node:stream'
import { SiError } from '../errors.ts'
import { XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT, aclXattrToText } from './acl.ts'
import { splitRdev } from './tar-attrs.ts'
import { BLOCK, encodeHeader, encodeSparseMap, padding, printableBytes, type TarEntry } from './tar-format.ts'
import { AtimeKeeper } from './atime-keeper.ts'
import { findDataSegments } from './holes.ts'
import { readTreeXattrs, type Xattrs } from './xattrs.ts'

const READ_CHUNK_BYTES = 1024 * 1024
/** Files up to this size are read whole while earlier entries are still being written. */
const SMALL_FILE_BYTES = 64 * 1024
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

export interface PackOptions {
  onProgress?(bytes: number): void
  signal?: AbortSignal
  /** Read xattrs and ACLs with getfattr (default true; needs the `attr` package). */
  xattrs?: boolean
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

function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new SiError('ERR_ABORTED', 'packing aborted')
}

function waitWritable (sink: Writable, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: unknown): void => {
      sink.off('drain', onDrain); sink.off('error', done); sink.off('close', onClose)
      signal?.removeEventListener('abort', onAbort)
      if (err !== undefined) reject(err); else resolve()
    }
    const onDrain = (): void => done()
    const onClose = (): void => done(new SiError('ERR_ARCHIVE', 'output closed while writing the archive'))
    const onAbort = (): void => done(new SiError('ERR_ABORTED', 'packing aborted'))
    sink.on('drain', onDrain); sink.on('error', done); sink.on('close', onClose)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** What is learned about an entry ahead of its turn: metadata, small contents, link target. */
interface Lookahead { st: BigIntStats; content?: Buffer; target?: Buffer }

async function openSource (abs: Buffer): Promise<FileHandle> {
  try {
    return await open(abs, OPEN_SOURCE_FLAGS | NOATIME)
  } catch (err) {
    // O_NOATIME needs ownership or CAP_FOWNER; without it the read still has to happen.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM' || NOATIME === 0) throw err
    return await open(abs, OPEN_SOURCE_FLAGS)
  }
}

async function openSame (rel: string, abs: Buffer, st: BigIntStats): Promise<FileHandle> {
  const fh = await openSource(abs)
  try {
    const now = await fh.stat({ bigint: true })
    if (now.ino !== st.ino || now.dev !== st.dev || !now.isFile()) {
      throw new SiError('ERR_SOURCE_CHANGED', `${rel} was replaced while packing`)
    }
    return fh
  } catch (err) {
    await fh.close()
    throw err
  }
}

async function readExactly (fh: FileHandle, buf: Buffer, position: number, rel: string, size: number): Promise<void> {
  let done = 0
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done)
    if (bytesRead === 0) throw new SiError('ERR_SOURCE_CHANGED', `${rel} shrank while packing (${position + done} of ${size} bytes read)`)
    done += bytesRead
  }
}

async function assertNoMore (fh: FileHandle, size: number, rel: string): Promise<void> {
  const { bytesRead } = await fh.read(Buffer.alloc(1), 0, 1, size)
  if (bytesRead !== 0) throw new SiError('ERR_SOURCE_CHANGED', `${rel} grew while packing (more than ${size} bytes)`)
}

/**
 * A small file, whole, with synchronous calls: most of a root file system is small
 * files, and each asynchronous call is a thread-pool round trip that costs more than the
 * syscall (the packer runs in `si-server image add`, where blocking is harmless).
 * Same checks as openSame and readExactly.
 */
function readSmallFile (rel: string, abs: Buffer, st: BigIntStats): Buffer {
  const size = Number(st.size)
  let fd: number
  try {
    fd = openSync(abs, OPEN_SOURCE_FLAGS | NOATIME)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM' || NOATIME === 0) throw err
    fd = openSync(abs, OPEN_SOURCE_FLAGS)
  }
  try {
    const now = fstatSync(fd, { bigint: true })
    if (now.ino !== st.ino || now.dev !== st.dev || !now.isFile()) throw new SiError('ERR_SOURCE_CHANGED', `${rel} was replaced while packing`)
    const buf = Buffer.allocUnsafe(size)
    for (let done = 0; done < size;) {
      const n = readSync(fd, buf, done, size - done, done)
      if (n === 0) throw new SiError('ERR_SOURCE_CHANGED', `${rel} shrank while packing (${done} of ${size} bytes read)`)
      done += n
    }
    if (readSync(fd, Buffer.alloc(1), 0, 1, size) !== 0) throw new SiError('ERR_SOURCE_CHANGED', `${rel} grew while packing (more than ${size} bytes)`)
    return buf
  } finally {
    closeSync(fd)
  }
}

/** Fewer blocks allocated than the size needs: the file has holes worth keeping. */
function hasHoles (st: BigIntStats): boolean {
  return st.isFile() && st.size >= BigInt(HOLE_BLOCK) && st.blocks * 512n < st.size
}

/** Synchronous, like readSmallFile: an entry's metadata costs its syscalls only. */
function lookAhead (rel: string, abs: Buffer, keeper: AtimeKeeper): Lookahead {
  const st = lstatSync(abs, { bigint: true })
  keeper.note(abs, st)
  if (st.isSymbolicLink()) return { st, target: readlinkSync(abs, { encoding: 'buffer' }) }
  if (st.isFile() && st.size <= BigInt(SMALL_FILE_BYTES) && !hasHoles(st)) return { st, content: readSmallFile(rel, abs, st) }
  return { st }
}

function childPath (dir: Buffer, name: Buffer): Buffer {
  return dir.length === 0 ? name : Buffer.concat([dir, SLASH, name])
}

class Packer {
  readonly skipped: string[] = []
  entries = 0
  bytes = 0
  unpackedBytes = 0
  private readonly firstPathOfInode = new Map<string, Buffer>()
  private readonly rootBytes: Buffer

  constructor (
    root: string,
    private readonly out: Writable,
    private readonly users: OwnerNames,
    private readonly groups: OwnerNames,
    private readonly xattrs: Map<string, Xattrs>,
    private readonly keeper: AtimeKeeper,
    private readonly opts: PackOptions
  ) {
    this.rootBytes = Buffer.from(root)
  }

  private abs (rel: Buffer): Buffer {
    return rel.length === 0 ? this.rootBytes : Buffer.concat([this.rootBytes, SLASH, rel])
  }

  async write (buf: Buffer): Promise<void> {
    if (buf.length === 0) return
    throwIfAborted(this.opts.signal)
    this.bytes += buf.length
    if (!this.out.write(buf)) await waitWritable(this.out, this.opts.signal)
    this.opts.onProgress?.(this.bytes)
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
      // Directories were listed before (getfattr): their atime from before that.
      atimeNs: this.keeper.original(this.abs(rel)) ?? st.atimeNs,
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
    const x = this.xattrs.get(rel.toString('latin1'))
    if (x !== undefined) {
      for (const [name, value] of x) {
        if (name === XATTR_ACL_ACCESS) e.aclAccess = aclXattrToText(value)
        else if (name === XATTR_ACL_DEFAULT) e.aclDefault = aclXattrToText(value)
        else (e.xattrs ??= new Map()).set(name, value)
      }
    }
    return e
  }

  async addTree (): Promise<void> {
    const st = await lstat(this.rootBytes, { bigint: true })
    await this.write(encodeHeader({ ...this.baseEntry(Buffer.alloc(0), st), type: 'directory' }))
    this.entries++
    this.unpackedBytes += DISK_BLOCK
    await this.addChildren(Buffer.alloc(0))
    await this.write(END_OF_ARCHIVE)
  }

  private async addChildren (rel: Buffer): Promise<void> {
    const names = readdirSync(this.abs(rel), { encoding: 'buffer' })
    names.sort(Buffer.compare)
    for (const name of names) {
      throwIfAborted(this.opts.signal)
      const child = childPath(rel, name)
      await this.addEntry(child, lookAhead(printableBytes(child), this.abs(child), this.keeper))
    }
  }

  private async addEntry (rel: Buffer, { st, content, target }: Lookahead): Promise<void> {
    const name = printableBytes(rel)
    if (st.isSocket()) {
      this.skipped.push(name)
      return
    }
    const e = this.baseEntry(rel, st)
    if (st.isDirectory()) {
      await this.write(encodeHeader({ ...e, type: 'directory' }))
      this.entries++
      this.unpackedBytes += DISK_BLOCK
      await this.addChildren(rel)
      return
    }
    if (st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`
      const first = this.firstPathOfInode.get(key)
      if (first !== undefined) {
        // A link member carries no xattrs of its own: they belong to the inode.
        await this.write(encodeHeader({ ...e, type: 'link', linkpath: first, xattrs: undefined, aclAccess: undefined, aclDefault: undefined }))
        this.entries++
        return
      }
      this.firstPathOfInode.set(key, rel)
    }

    if (target !== undefined) {
      await this.write(encodeHeader({ ...e, type: 'symlink', linkpath: target }))
      if (target.length > INLINE_SYMLINK_BYTES) this.countData(target.length)
    } else if (st.isFIFO()) {
      await this.write(encodeHeader({ ...e, type: 'fifo' }))
    } else if (st.isCharacterDevice()) {
      await this.write(encodeHeader({ ...e, type: 'character-device' }))
    } else if (st.isBlockDevice()) {
      await this.write(encodeHeader({ ...e, type: 'block-device' }))
    } else if (content !== undefined) {
      await this.write(encodeHeader({ ...e, size: content.length }))
      this.countData(content.length)
      await this.write(content)
      await this.write(ZERO_BLOCK.subarray(0, padding(content.length)))
    } else if (st.isFile()) {
      await this.addFile(name, rel, e, st)
    } else {
      this.skipped.push(name)
      return
    }
    this.entries++
  }

  /** Data bytes of a file, or a symlink's target, as whole disk blocks. */
  private countData (bytes: number): void {
    this.unpackedBytes += Math.ceil(bytes / DISK_BLOCK) * DISK_BLOCK
  }

  private async addFile (name: string, rel: Buffer, e: TarEntry, st: BigIntStats): Promise<void> {
    const size = Number(st.size)
    const fh = await openSame(name, this.abs(rel), st)
    try {
      const segments = hasHoles(st) ? await findDataSegments(fh, size, name) : [[0, size] as [number, number]]
      const sparse = segments.length !== 1 || segments[0][0] !== 0 || segments[0][1] !== size
      const entry: TarEntry = { ...e, size, ...(sparse ? { sparse: segments } : {}) }
      await this.write(encodeHeader(entry))
      let stored = 0
      if (sparse) {
        const map = encodeSparseMap(segments)
        await this.write(map)
        stored += map.length
      }
      for (const [offset, length] of segments) {
        for (let done = 0; done < length;) {
          throwIfAborted(this.opts.signal)
          const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, length - done))
          await readExactly(fh, buf, offset + done, name, size)
          await this.write(buf)
          done += buf.length
        }
        stored += length
        this.countData(length)
      }
      await assertNoMore(fh, size, name)
      await this.write(ZERO_BLOCK.subarray(0, padding(stored)))
    } finally {
      await fh.close()
    }
  }
}

/** Every directory's times before anything lists it (getfattr lists them all first). */
function noteDirectories (abs: Buffer, keeper: AtimeKeeper): void {
  keeper.note(abs, lstatSync(abs, { bigint: true }))
  for (const d of readdirSync(abs, { withFileTypes: true, encoding: 'buffer' })) {
    if (d.isDirectory()) noteDirectories(Buffer.concat([abs, SLASH, d.name as unknown as Buffer]), keeper)
  }
}

async function sourceDir (srcDir: string): Promise<string> {
  try {
    const root = await realpath(srcDir)
    if ((await lstat(root)).isDirectory()) return root
  } catch {
    // Reported below with the path the caller gave.
  }
  throw new SiError('ERR_SOURCE_NOT_FOUND', `${srcDir} is not a directory`)
}

/** Writes srcDir as a tar archive to `out` (a stream, ended on success, or a file path). */
export async function packDirectory (srcDir: string, out: Writable | string, opts: PackOptions = {}): Promise<PackResult> {
  const root = await sourceDir(srcDir)
  throwIfAborted(opts.signal)
  const keeper = new AtimeKeeper()
  noteDirectories(Buffer.from(root), keeper)
  const [users, groups, xattrs] = await Promise.all([
    readOwnerNames(root, 'passwd'),
    readOwnerNames(root, 'group'),
    opts.xattrs === false ? new Map<string, Xattrs>() : readTreeXattrs(root)
  ])
  const output = typeof out === 'string' ? createWriteStream(out) : out
  const packer = new Packer(root, output, users, groups, xattrs, keeper, opts)
  try {
    await packer.addTree()
    output.end()
    await once(output, typeof out === 'string' ? 'close' : 'finish')
  } catch (err) {
    if (typeof out === 'string') {
      output.on('error', () => {})
      output.destroy()
      if (!output.closed) await new Promise<void>(resolve => output.once('close', () => resolve()))
      await unlink(out).catch(() => {})
    } else {
      output.on('error', () => {})
      output.destroy(err as Error)
    }
    if (opts.signal?.aborted === true) throw new SiError('ERR_ABORTED', 'packing aborted')
    if (err instanceof SiError) throw err
    throw new SiError('ERR_ARCHIVE', `packing ${srcDir} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  } finally {
    await keeper.restore()
  }
  return { bytes: packer.bytes, entries: packer.entries, unpackedBytes: packer.unpackedBytes, skipped: packer.skipped }
}
