// Unpacks an image tarball into the target filesystem with every attribute, treating
// the archive as hostile: the target directory is a jail (extract-jail.ts). This side
// reads the archive, refuses paths that could escape, and turns each entry into
// operations; the extraction worker (extract-worker.ts) applies them with synchronous
// calls, batch by batch, so the file system work costs the disk's time and never blocks
// the event loop the swarm runs on.
//
// While extraction runs, TARGET/.si-incomplete exists (see docs/FIDELITY.md): a target
// holding it is not an installed system. It is removed only once every entry and every
// attribute is in place; a failure leaves it, with the reason in it. A target that still
// holds it from an earlier run is extracted again: what is there is replaced.
//
// Paths are handled as "byte strings" (latin1: one char per byte) so names that are not
// UTF-8 reach the file system unchanged.
import { chmod, lstat, mkdir, realpath, rm, utimes, writeFile } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { SiError, isSiError } from '../errors.ts'
import { decompressed } from '../image/compression.ts'
import { printableBytes, type TarEntry } from '../image/tar-format.ts'
import { readTar, type Segment } from '../image/tar-reader.ts'
import { TimeFixer, nodeTimes, type Times } from '../image/times.ts'
import { TIME_FIXES_PER_RUN, errno, shown, unsafe } from './extract-jail.ts'
import { ExtractFeed } from './extract-feed.ts'
import type { EntryAttrs, EntryXattrs } from './extract-protocol.ts'

/** Present in the target from the first entry until the last attribute is set. */
export const INCOMPLETE_MARKER = '.si-incomplete'
/** Written inside the marker when extraction fails. */
const FAILURE_NOTE = 'error'
const MARKER_MODE = 0o700
const ROOT_NAME = '.'

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
  /** Exact times that wait for one run of the time fixer (default TIME_FIXES_PER_RUN). */
  timeFixesPerRun?: number
  /**
   * Input chunks extraction is done with, handed back to their source for reuse (a
   * pooled reader's, PieceStore.releaseChunk). Only chunks read as they came (an
   * uncompressed payload) come back: a decompressor's input is never given back.
   */
  release?(chunk: Buffer): void
}

export interface ExtractResult {
  entries: number
  /** Bytes of regular-file content written. */
  bytes: number
  /** Times extracted for the target root (for completeTarget after overlays). */
  rootTimes?: Times
  /** The most exact times that waited in the worker after a batch: bounded, whatever the entry count. */
  mostTimesWaiting: number
}

/** The path of an archive path inside the target, or an ERR_UNSAFE_ARCHIVE if it could escape. */
function jailPath (path: Buffer, entry: string, what: string): string {
  const text = path.toString('latin1')
  if (text.includes('\0')) unsafe(entry, `${what} contains a NUL byte`)
  if (text.startsWith('/')) unsafe(entry, `${what} "${shown(text)}" is absolute`)
  const parts = text.split('/').filter(p => p !== '' && p !== '.')
  if (parts.includes('..')) unsafe(entry, `${what} "${shown(text)}" has a ".." component`)
  if (parts[0] === INCOMPLETE_MARKER) unsafe(entry, `${what} uses the reserved name ${INCOMPLETE_MARKER}`)
  return parts.join('/')
}

function attrsOf (e: TarEntry): EntryAttrs {
  return { mode: e.mode, uid: e.uid, gid: e.gid, mtimeNs: e.mtimeNs, atimeNs: e.atimeNs ?? e.mtimeNs }
}

/** Exact-size copies: the values are views into pax buffers. */
function xattrsOf (e: TarEntry): EntryXattrs | undefined {
  if (e.xattrs === undefined && e.aclAccess === undefined && e.aclDefault === undefined) return undefined
  return {
    ...(e.xattrs !== undefined ? { xattrs: [...e.xattrs].map(([k, v]) => [k, new Uint8Array(v)] as [string, Uint8Array]) } : {}),
    ...(e.aclAccess !== undefined ? { aclAccess: e.aclAccess } : {}),
    ...(e.aclDefault !== undefined ? { aclDefault: e.aclDefault } : {})
  }
}

/** Hands one entry to the worker; resolves to its content bytes. */
async function feedEntry (feed: ExtractFeed, e: TarEntry, body: () => AsyncGenerator<Segment>, overlay: boolean): Promise<number> {
  const name = printableBytes(e.path) || ROOT_NAME
  const rel = jailPath(e.path, name, 'path')
  if (rel === '' && e.type !== 'directory') unsafe(name, 'would replace the target directory')
  const attrs = attrsOf(e)
  switch (e.type) {
    case 'directory':
      // An override does not own the root's attributes: the image does.
      if (rel === '' && overlay) feed.skipped(name)
      else await feed.add({ kind: 'directory', rel, name, attrs, xattrs: xattrsOf(e) }, name)
      return 0
    case 'file': {
      await feed.add({ kind: 'file', rel, name, attrs, xattrs: xattrsOf(e), size: e.size, sparse: e.sparse !== undefined })
      let bytes = 0
      for await (const { offset, data } of body()) {
        await feed.data(offset, data)
        bytes += data.length
      }
      await feed.add({ kind: 'end-file' }, name)
      return bytes
    }
    case 'symlink':
      if (e.linkpath === undefined || e.linkpath.length === 0) throw new SiError('ERR_ARCHIVE', `entry "${name}": symlink without a target`)
      if (e.linkpath.includes(0)) unsafe(name, 'symlink target contains a NUL byte')
      await feed.add({ kind: 'symlink', rel, name, attrs, xattrs: xattrsOf(e), target: e.linkpath.toString('latin1') }, name)
      return 0
    case 'link': {
      const target = jailPath(e.linkpath ?? Buffer.alloc(0), name, 'hard link target')
      if (target === '') unsafe(name, 'hard link to the target directory')
      await feed.add({ kind: 'link', rel, name, target }, name)
      return 0
    }
    case 'fifo':
    case 'character-device':
    case 'block-device':
      await feed.add({ kind: e.type, rel, name, attrs, xattrs: xattrsOf(e), major: e.devmajor ?? 0, minor: e.devminor ?? 0 }, name)
      return 0
  }
}

/** Creates TARGET/.si-incomplete (a private directory): the target is not complete. */
export async function markIncomplete (root: string): Promise<string> {
  const marker = `${root}/${INCOMPLETE_MARKER}`
  try {
    // What an earlier run left there (its failure note, half-made device nodes) is stale.
    const st = await lstat(marker)
    await rm(marker, { force: true, recursive: st.isDirectory() })
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

/**
 * `work`, or ERR_ABORTED as soon as `signal` fires. The listener goes when the work is
 * done: a race against one long-lived promise would keep a reaction per entry.
 */
function untilAborted<T> (work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new SiError('ERR_ABORTED', 'extraction aborted'))
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      value => { signal.removeEventListener('abort', onAbort); resolve(value) },
      (err: unknown) => { signal.removeEventListener('abort', onAbort); reject(err) }
    )
  })
}

/** Extracts the tar stream `input` (plain, gzip or zstd) into the existing directory `target`. */
export async function extractTar (input: Readable | AsyncIterable<Buffer>, target: string, opts: ExtractOptions = {}): Promise<ExtractResult> {
  const destroyInput = (): void => {
    const s = input as Readable
    if (typeof s.destroy === 'function') { s.on?.('error', () => {}); s.destroy() }
  }
  // Until the reader below listens, an error of the input stream must not go uncaught:
  // the stream keeps it, and the reader meets it when it starts.
  ;(input as Partial<Readable>).on?.('error', () => {})
  let root: string
  try {
    root = await realpath(target)
    if (!(await lstat(root)).isDirectory()) throw new Error('not a directory')
  } catch (err) {
    destroyInput()
    throw new SiError('ERR_INVALID_ARGUMENT', `extraction target ${target} is not a directory`, { cause: err })
  }
  const marker = await markIncomplete(root)
  // The worker works on byte strings; realpath gave UTF-8.
  const feed = new ExtractFeed({ root: Buffer.from(root).toString('latin1'), marker, timeFixesPerRun: opts.timeFixesPerRun ?? TIME_FIXES_PER_RUN }, name => opts.onEntry?.(name))
  // gzip and zstd payloads are recognised by their magic bytes.
  const members = readTar(decompressed(input as AsyncIterable<Buffer>), { release: opts.release })
  const overlay = opts.overlay === true

  let entries = 0
  let bytes = 0
  let rootTimes: Times | undefined
  try {
    const step = async (): Promise<boolean> => {
      const next = await members.next()
      if (next.done === true) return false
      const { entry, body } = next.value
      if (entry.path.length === 0 && entry.type === 'directory' && !overlay) rootTimes = { atimeNs: entry.atimeNs ?? entry.mtimeNs, mtimeNs: entry.mtimeNs }
      bytes += await feedEntry(feed, entry, body, overlay)
      entries++
      return true
    }
    while (await untilAborted(step(), opts.signal));
    await untilAborted(feed.finish(overlay), opts.signal)
    if (opts.keepMarker !== true) await completeTarget(root, rootTimes)
    return { entries, bytes, mostTimesWaiting: feed.mostTimesWaiting, ...(rootTimes !== undefined ? { rootTimes } : {}) }
  } catch (err) {
    await feed.stop()
    destroyInput()
    await members.return(undefined).catch(() => {})
    const failure = isSiError(err) ? err : new SiError(errno(err) === 'ENOSPC' ? 'ERR_NO_SPACE' : 'ERR_ARCHIVE', `extraction failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
    await writeFile(`${marker}/${FAILURE_NOTE}`, `${failure.code}: ${failure.message}\n`).catch(() => {})
    throw failure
  }
}
