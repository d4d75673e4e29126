// Turns a directory tree into a tar stream with every attribute the extractor restores:
// numeric owners, all 12 mode bits, mtimes, symlinks verbatim, hard links as links,
// FIFOs and device nodes. Entries come in byte-sorted order so the same tree always
// gives the same archive (and so the same torrent), whatever the locale.
import { once } from 'node:events'
import { constants as fsc, createWriteStream, type BigIntStats } from 'node:fs'
import { lstat, open, readdir, readFile, readlink, realpath, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Writable } from 'node:stream'
import * as tar from 'tar-stream'
import { SiError } from '../errors.ts'
import { paxRecordsFor, splitRdev, type TarHeader } from './tar-attrs.ts'

const READ_CHUNK_BYTES = 1024 * 1024
/** Files up to this size are read whole while earlier entries are still being written. */
const SMALL_FILE_BYTES = 64 * 1024
/** Entries of a directory examined ahead of their turn (bounds memory to about 1 MiB a level). */
const LOOKAHEAD_ENTRIES = 16
/** Headers of empty entries are queued without backpressure; stop queueing above this. */
const MAX_PACK_BACKLOG_BYTES = 4 * 1024 * 1024
/** ustar's uname/gname fields are 32 bytes, NUL-terminated. */
const MAX_OWNER_NAME_BYTES = 31
const ROOT_ENTRY = './'

export interface PackOptions {
  onProgress?(bytes: number): void
  signal?: AbortSignal
}

export interface PackResult {
  /** Bytes of tar written. */
  bytes: number
  entries: number
  /** Paths (relative) that tar cannot carry, such as sockets. */
  skipped: string[]
}

type OwnerNames = Map<number, string>

/** Owner names come from the image's own files: the host's users mean nothing to it. */
async function readOwnerNames (srcDir: string, file: string): Promise<OwnerNames> {
  const names: OwnerNames = new Map()
  const path = join(srcDir, 'etc', file)
  try {
    if (!(await lstat(path)).isFile()) return names
    for (const line of (await readFile(path, 'utf8')).split('\n')) {
      const [name, , id] = line.split(':')
      const n = Number(id)
      if (name && Number.isSafeInteger(n) && !names.has(n) && Buffer.byteLength(name) <= MAX_OWNER_NAME_BYTES) names.set(n, name)
    }
  } catch {
    // No passwd/group in the tree: names are only a hint, numeric ids are authoritative.
  }
  return names
}

function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new SiError('ERR_ABORTED', 'packing aborted')
}

/** Names that are not UTF-8 would be altered by tar-stream's string headers: refuse them. */
function decodeName (raw: Buffer, dir: string): string {
  const name = raw.toString('utf8')
  if (!Buffer.from(name, 'utf8').equals(raw)) {
    throw new SiError('ERR_ARCHIVE', `a name in directory "${dir || '.'}" is not valid UTF-8 (bytes ${raw.toString('hex')}); not supported yet`)
  }
  return name
}

/** What pumping needs from a Node Writable or a tar-stream (streamx) entry sink. */
interface ByteSink {
  write(chunk: Uint8Array): boolean
  on(event: string, fn: (...args: any[]) => void): unknown
  off(event: string, fn: (...args: any[]) => void): unknown
}

function waitWritable (sink: ByteSink): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: unknown): void => {
      sink.off('drain', onDrain); sink.off('error', done); sink.off('close', onClose)
      if (err !== undefined) reject(err); else resolve()
    }
    const onDrain = (): void => done()
    const onClose = (): void => done(new SiError('ERR_ARCHIVE', 'tar stream closed while writing'))
    sink.on('drain', onDrain); sink.on('error', done); sink.on('close', onClose)
  })
}

/**
 * Entry sinks re-emit the pack's failure as an 'error' event when destroyed; their
 * callback already reports it, so an unheard event must not crash the process.
 */
function quiet<T extends { on(event: 'error', fn: (err: Error) => void): unknown }> (sink: T): T {
  sink.on('error', () => {})
  return sink
}

/** What is learned about an entry ahead of its turn: metadata, small contents, link target. */
interface Lookahead { st: BigIntStats; content?: Buffer; target?: Buffer }

// O_NOFOLLOW and O_NONBLOCK: if a path was swapped for a symlink or a FIFO since lstat,
// fail instead of archiving something else or blocking forever.
const OPEN_SOURCE_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK

async function openSame (rel: string, abs: string, st: BigIntStats): Promise<FileHandle> {
  const fh = await open(abs, OPEN_SOURCE_FLAGS)
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

async function readSmallFile (rel: string, abs: string, st: BigIntStats): Promise<Buffer> {
  const size = Number(st.size)
  const fh = await openSame(rel, abs, st)
  try {
    // One byte of room beyond the size tells a file that grew from one that did not.
    const buf = Buffer.allocUnsafe(size + 1)
    let done = 0
    while (done < buf.length) {
      const { bytesRead } = await fh.read(buf, done, buf.length - done, done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    if (done < size) throw new SiError('ERR_SOURCE_CHANGED', `${rel} shrank while packing (${done} of ${size} bytes read)`)
    if (done > size) throw new SiError('ERR_SOURCE_CHANGED', `${rel} grew while packing (more than ${size} bytes)`)
    return buf.subarray(0, size)
  } finally {
    await fh.close()
  }
}

async function lookAhead (rel: string, abs: string): Promise<Lookahead> {
  const st = await lstat(abs, { bigint: true })
  if (st.isSymbolicLink()) return { st, target: await readlink(abs, { encoding: 'buffer' }) }
  if (st.isFile() && st.size <= BigInt(SMALL_FILE_BYTES)) return { st, content: await readSmallFile(rel, abs, st) }
  return { st }
}

class Packer {
  readonly pack = tar.pack()
  readonly skipped: string[] = []
  entries = 0
  private readonly firstPathOfInode = new Map<string, string>()
  private readonly consumedWaiters: Array<() => void> = []

  constructor (
    private readonly root: string,
    private readonly users: OwnerNames,
    private readonly groups: OwnerNames,
    private readonly signal: AbortSignal | undefined
  ) {
    // A producer waiting for the consumer must wake up if the stream dies instead.
    this.pack.on('close', () => this.consumed())
  }

  /** Called by the consumer after every chunk it takes off the pack stream. */
  consumed (): void {
    for (const wake of this.consumedWaiters.splice(0)) wake()
  }

  private backlog (): number {
    // streamx exposes no public measure of a Readable's queue; tar-stream is pinned.
    const state = (this.pack as unknown as { _readableState?: { buffered?: number } })._readableState
    return state?.buffered ?? 0
  }

  private async addVoid (header: TarHeader): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      quiet(this.pack.entry(header, err => { if (err) reject(err); else resolve() }))
    })
    while (this.backlog() > MAX_PACK_BACKLOG_BYTES) {
      throwIfAborted(this.signal)
      if (this.pack.destroyed) throw new SiError('ERR_ARCHIVE', 'tar stream closed while writing')
      await new Promise<void>(resolve => this.consumedWaiters.push(resolve))
    }
  }

  private baseHeader (name: string, st: BigIntStats): TarHeader {
    const uid = Number(st.uid)
    const gid = Number(st.gid)
    // Whole seconds for now; the pax record can carry st.mtimeNs once fidelity asks for it.
    const mtime = Number(st.mtimeNs / 1_000_000_000n) - (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n ? 1 : 0)
    const header: TarHeader = {
      name,
      // The file-type bits stay in: tar-stream replaces a mode of 0 by 0644 (or 0755),
      // and only writes the low 12 bits anyway.
      mode: Number(st.mode),
      uid: Math.min(uid, 0o777777),
      gid: Math.min(gid, 0o777777),
      mtime: new Date(mtime * 1000)
    }
    const uname = this.users.get(uid)
    const gname = this.groups.get(gid)
    if (uname !== undefined) header.uname = uname
    if (gname !== undefined) header.gname = gname
    let dev: { major: number; minor: number } | undefined
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      dev = splitRdev(st.rdev)
      header.devmajor = Math.min(dev.major, 0o777777)
      header.devminor = Math.min(dev.minor, 0o777777)
    }
    const pax = paxRecordsFor({ uid, gid, mtime, devmajor: dev?.major, devminor: dev?.minor })
    if (pax !== undefined) header.pax = pax
    return header
  }

  async addTree (): Promise<void> {
    const st = await lstat(this.root, { bigint: true })
    await this.addVoid({ ...this.baseHeader(ROOT_ENTRY, st), type: 'directory' })
    this.entries++
    await this.addChildren('')
  }

  private async addChildren (rel: string): Promise<void> {
    const dirAbs = rel === '' ? this.root : join(this.root, rel)
    const raw = await readdir(dirAbs, { encoding: 'buffer' })
    raw.sort(Buffer.compare)
    const names = raw.map(r => decodeName(r, rel))
    // Entries must go out in order, but each file costs several thread-pool round trips;
    // looking at the next few while this one is written keeps the pool busy.
    const ahead: Array<Promise<Lookahead> | undefined> = []
    const lookAt = (i: number): void => {
      if (i >= names.length) return
      const p = lookAhead(rel === '' ? names[i] : `${rel}/${names[i]}`, join(dirAbs, names[i]))
      p.catch(() => {}) // reported when its turn comes, or moot if packing already failed
      ahead[i] = p
    }
    for (let i = 0; i < LOOKAHEAD_ENTRIES; i++) lookAt(i)
    for (let i = 0; i < names.length; i++) {
      throwIfAborted(this.signal)
      const found = await ahead[i]!
      ahead[i] = undefined
      lookAt(i + LOOKAHEAD_ENTRIES)
      const childRel = rel === '' ? names[i] : `${rel}/${names[i]}`
      await this.addEntry(childRel, join(dirAbs, names[i]), found)
    }
  }

  private async addEntry (rel: string, abs: string, { st, content, target }: Lookahead): Promise<void> {
    if (st.isSocket()) {
      this.skipped.push(rel)
      return
    }
    const header = this.baseHeader(rel, st)
    if (st.isDirectory()) {
      await this.addVoid({ ...header, name: `${rel}/`, type: 'directory' })
      this.entries++
      await this.addChildren(rel)
      return
    }

    if (st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`
      const first = this.firstPathOfInode.get(key)
      if (first !== undefined) {
        await this.addVoid({ ...header, type: 'link', linkname: first, size: 0 })
        this.entries++
        return
      }
      this.firstPathOfInode.set(key, rel)
    }

    if (target !== undefined) {
      await this.addVoid({ ...header, type: 'symlink', linkname: decodeName(target, rel) })
    } else if (st.isFIFO()) {
      await this.addVoid({ ...header, type: 'fifo' })
    } else if (st.isCharacterDevice()) {
      await this.addVoid({ ...header, type: 'character-device' })
    } else if (st.isBlockDevice()) {
      await this.addVoid({ ...header, type: 'block-device' })
    } else if (content !== undefined) {
      await new Promise<void>((resolve, reject) => {
        quiet(this.pack.entry({ ...header, type: 'file', size: content.length }, content, err => { if (err) reject(err); else resolve() }))
      })
    } else if (st.isFile()) {
      await this.addFile(rel, abs, header, st)
    } else {
      this.skipped.push(rel)
      return
    }
    this.entries++
  }

  private async addFile (rel: string, abs: string, header: TarHeader, st: BigIntStats): Promise<void> {
    const fh = await openSame(rel, abs, st)
    try {
      const size = Number(st.size)
      let settle!: (err?: unknown) => void
      const entryWritten = new Promise<void>((resolve, reject) => {
        settle = err => { if (err) reject(err); else resolve() }
      })
      const sink = quiet(this.pack.entry({ ...header, type: 'file', size }, err => settle(err)))
      try {
        await this.pumpFile(rel, fh, size, sink)
      } catch (err) {
        entryWritten.catch(() => {})
        sink.destroy(err as Error)
        throw err
      }
      sink.end(undefined)
      await entryWritten
    } finally {
      await fh.close()
    }
  }

  private async pumpFile (rel: string, fh: FileHandle, size: number, sink: ByteSink): Promise<void> {
    let done = 0
    while (done < size) {
      throwIfAborted(this.signal)
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, size - done))
      const { bytesRead } = await fh.read(buf, 0, buf.length, done)
      if (bytesRead === 0) throw new SiError('ERR_SOURCE_CHANGED', `${rel} shrank while packing (${done} of ${size} bytes read)`)
      done += bytesRead
      if (!sink.write(buf.subarray(0, bytesRead))) await waitWritable(sink)
    }
    const { bytesRead } = await fh.read(Buffer.alloc(1), 0, 1, size)
    if (bytesRead !== 0) throw new SiError('ERR_SOURCE_CHANGED', `${rel} grew while packing (more than ${size} bytes)`)
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
  const [users, groups] = await Promise.all([readOwnerNames(root, 'passwd'), readOwnerNames(root, 'group')])
  const packer = new Packer(root, users, groups, opts.signal)
  const pack = packer.pack
  const output = typeof out === 'string' ? createWriteStream(out) : out
  let bytes = 0
  // Whichever side fails first holds the cause; the other side's error is its echo.
  let firstError: unknown
  const fail = (err: unknown): never => {
    firstError ??= err
    pack.destroy(err as Error)
    throw err
  }
  const onAbort = (): void => {
    firstError ??= new SiError('ERR_ABORTED', 'packing aborted')
    pack.destroy(firstError as Error)
  }
  opts.signal?.addEventListener('abort', onAbort, { once: true })

  const produce = (async () => {
    try {
      await packer.addTree()
      pack.finalize()
    } catch (err) {
      fail(err)
    }
  })()
  const consume = (async () => {
    try {
      for await (const data of pack) {
        const chunk = data as Buffer
        bytes += chunk.length
        if (!output.write(chunk)) await waitWritable(output)
        packer.consumed()
        opts.onProgress?.(bytes)
      }
      output.end()
      await once(output, typeof out === 'string' ? 'close' : 'finish')
    } catch (err) {
      fail(err)
    }
  })()

  const results = await Promise.allSettled([produce, consume])
  opts.signal?.removeEventListener('abort', onAbort)
  if (results.some(r => r.status === 'rejected')) {
    if (typeof out === 'string') {
      // Writes still in flight fail once the stream is destroyed; the cause is known already.
      output.on('error', () => {})
      output.destroy()
      if (!output.closed) await new Promise<void>(resolve => output.once('close', () => resolve()))
      await unlink(out).catch(() => {})
    }
    const err = firstError
    if (err instanceof SiError) throw err
    throw new SiError('ERR_ARCHIVE', `packing ${srcDir} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  }
  return { bytes, entries: packer.entries, skipped: packer.skipped }
}
