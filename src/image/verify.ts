// The fidelity checker: what an installed node must match its image on. A snapshot is
// taken of an image (its tar stream, optionally with overrides laid over it) or of a
// directory tree (symlinks never followed), and two snapshots are compared attribute by
// attribute: type, mode, owners, size, content, symlink target, device numbers, mtime
// and atime to the nanosecond, hard-link groups, xattrs, ACLs and sparseness.
import { constants as fsc, type BigIntStats } from 'node:fs'
import { lstat, open, readdir, readlink } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT, aclXattrToText, canonicalAcl } from './acl.ts'
import { AtimeKeeper } from './atime-keeper.ts'
import { decompressed } from './compression.ts'
import { ContentDigest } from './content-digest.ts'
import { findDataSegments, segmentsHaveHole } from './holes.ts'
import { splitRdev } from './tar-attrs.ts'
import { formatPaxTime, printableBytes, type TarEntry } from './tar-format.ts'
import { readTar } from './tar-reader.ts'
import { readTreeXattrs } from './xattrs.ts'

const ROOT = '.'
const READ_CHUNK_BYTES = 1024 * 1024
/** Reading a file to hash it must not change the atime being checked. */
const NOATIME = fsc.O_NOATIME ?? 0

export const ATTRIBUTES = [
  'mode', 'uid', 'gid', 'size', 'content', 'target', 'device', 'mtime', 'atime', 'hardlinks', 'xattrs', 'acl-access', 'acl-default', 'sparse'
] as const
export type Attribute = typeof ATTRIBUTES[number]

export interface Difference {
  path: string
  attribute: string
  expected: string
  actual: string
}

interface NodeInfo {
  type: string
  mode: string
  uid: string
  gid: string
  mtime: string
  atime: string
  size?: string
  content?: string
  /** latin1 byte string */
  target?: string
  device?: string
  xattrs?: string
  'acl-access'?: string
  'acl-default'?: string
  sparse?: string
  /** Same value for paths that share an inode (non-directories). */
  inode?: string
}

/** Paths are latin1 byte strings ("" is the root), so any name compares exactly. */
export type Snapshot = Map<string, NodeInfo>

export interface CompareOptions {
  /** Attributes left out of the comparison (e.g. atime of a tree that was browsed). */
  ignore?: Iterable<string>
}

function typeOf (st: BigIntStats): string {
  if (st.isDirectory()) return 'directory'
  if (st.isFile()) return 'file'
  if (st.isSymbolicLink()) return 'symlink'
  if (st.isFIFO()) return 'fifo'
  if (st.isCharacterDevice()) return 'character-device'
  if (st.isBlockDevice()) return 'block-device'
  if (st.isSocket()) return 'socket'
  return 'unknown'
}

function modeText (mode: number | bigint): string {
  return (BigInt(mode) & 0o7777n).toString(8).padStart(4, '0')
}

function xattrText (x: Map<string, Buffer>): string | undefined {
  const lines = [...x].filter(([k]) => k !== XATTR_ACL_ACCESS && k !== XATTR_ACL_DEFAULT)
    .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([k, v]) => `${printableBytes(Buffer.from(k, 'latin1'))}=0x${v.toString('hex')}`)
  return lines.length > 0 ? lines.join(' ') : undefined
}

/** Digest of a file's content; only the data segments of a file with holes are read. */
async function digestFile (abs: Buffer, size: number, holes: boolean): Promise<string> {
  let fh
  try {
    fh = await open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | NOATIME)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err
    fh = await open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK)
  }
  try {
    const d = new ContentDigest()
    const buf = Buffer.allocUnsafe(READ_CHUNK_BYTES)
    const segments = holes ? await findDataSegments(fh.fd, size, abs.toString()) : [[0, size] as [number, number]]
    for (const [offset, length] of segments) {
      for (let done = 0; done < length;) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - done), offset + done)
        if (bytesRead === 0) break
        d.update(offset + done, buf.subarray(0, bytesRead))
        done += bytesRead
      }
    }
    return d.digest(size)
  } finally {
    await fh.close()
  }
}

/**
 * A snapshot of a directory tree. Each path is lstat'ed before anything reads it, and
 * the atimes that listing and readlink moved are put back afterwards.
 */
export async function snapshotTree (root: string): Promise<Snapshot> {
  const nodes: Snapshot = new Map()
  const rootBytes = Buffer.from(root)
  const keeper = new AtimeKeeper()
  const visit = async (rel: Buffer): Promise<void> => {
    const abs = rel.length === 0 ? rootBytes : Buffer.concat([rootBytes, Buffer.from('/'), rel])
    const st = await lstat(abs, { bigint: true })
    keeper.note(abs, st)
    const node: NodeInfo = {
      type: typeOf(st),
      mode: modeText(st.mode),
      uid: String(st.uid),
      gid: String(st.gid),
      mtime: String(st.mtimeNs),
      atime: String(st.atimeNs)
    }
    nodes.set(rel.toString('latin1'), node)
    if (!st.isDirectory()) node.inode = `${st.dev}:${st.ino}`
    if (st.isFile()) {
      node.size = String(st.size)
      const holes = st.blocks * 512n < st.size
      node.content = await digestFile(abs, Number(st.size), holes)
      node.sparse = holes ? 'yes' : 'no'
    } else if (st.isSymbolicLink()) {
      node.target = (await readlink(abs, { encoding: 'buffer' })).toString('latin1')
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const { major, minor } = splitRdev(st.rdev)
      node.device = `${major}:${minor}`
    }
    if (!st.isDirectory()) return
    const children = await readdir(abs, { encoding: 'buffer' })
    children.sort(Buffer.compare)
    for (const child of children) await visit(rel.length === 0 ? child : Buffer.concat([rel, Buffer.from('/'), child]))
  }
  await visit(Buffer.alloc(0))
  // After the walk: getfattr lists directories, which would move their atimes first.
  const xattrs = await readTreeXattrs(root).finally(() => keeper.restore())
  for (const [rel, x] of xattrs) {
    const node = nodes.get(rel)
    if (node === undefined) continue
    const text = xattrText(x)
    if (text !== undefined) node.xattrs = text
    const access = x.get(XATTR_ACL_ACCESS)
    const deflt = x.get(XATTR_ACL_DEFAULT)
    if (access !== undefined) node['acl-access'] = aclXattrToText(access)
    if (deflt !== undefined) node['acl-default'] = aclXattrToText(deflt)
  }
  return nodes
}

export interface ArchiveSnapshotOptions {
  /** Snapshot the archive is laid over (an override over its image). */
  base?: Snapshot
  /** Distinguishes the inodes of different layers. */
  layer?: string
}

/**
 * A snapshot of what extracting `input` (a tar stream, plain, gzip or zstd) gives. With `base`, the archive is
 * laid over it as an override is: entries replace paths, the root keeps the base's
 * attributes.
 */
export async function snapshotArchive (input: AsyncIterable<Buffer>, opts: ArchiveSnapshotOptions = {}): Promise<Snapshot> {
  const nodes: Snapshot = new Map(opts.base ?? [])
  const layer = opts.layer ?? 'image'
  for await (const { entry: e, body } of readTar(decompressed(input))) {
    const key = e.path.toString('latin1')
    if (key === '' && opts.base !== undefined) continue
    if (e.type === 'link') {
      const target = nodes.get((e.linkpath ?? Buffer.alloc(0)).toString('latin1').replace(/^(\.\/)+/, ''))
      if (target === undefined || target.type === 'directory') {
        throw new SiError('ERR_ARCHIVE', `entry "${printableBytes(e.path)}": hard link to a missing path`)
      }
      nodes.set(key, { ...target })
      continue
    }
    const node: NodeInfo = {
      type: e.type,
      mode: modeText(e.mode),
      uid: String(e.uid),
      gid: String(e.gid),
      mtime: String(e.mtimeNs),
      atime: String(e.atimeNs ?? e.mtimeNs)
    }
    if (e.type !== 'directory') node.inode = `${layer}:${key}`
    if (e.type === 'file') {
      const d = new ContentDigest()
      for await (const { offset, data } of body()) d.update(offset, data)
      node.size = String(e.size)
      node.content = d.digest(e.size)
      node.sparse = e.sparse !== undefined && segmentsHaveHole(e.sparse, e.size) ? 'yes' : 'no'
    } else if (e.type === 'symlink') {
      node.target = (e.linkpath ?? Buffer.alloc(0)).toString('latin1')
    } else if (e.type === 'character-device' || e.type === 'block-device') {
      node.device = `${e.devmajor ?? 0}:${e.devminor ?? 0}`
    }
    if (e.xattrs !== undefined && e.xattrs.size > 0) node.xattrs = xattrText(e.xattrs)
    if (e.aclAccess !== undefined) node['acl-access'] = canonicalAcl(e.aclAccess)
    if (e.aclDefault !== undefined) node['acl-default'] = canonicalAcl(e.aclDefault)
    // A directory entry over an existing directory keeps what is below it.
    nodes.set(key, node)
  }
  return nodes
}

function linkGroups (s: Snapshot): Map<string, string> {
  const byInode = new Map<string, string[]>()
  for (const [path, n] of s) {
    if (n.inode === undefined) continue
    const g = byInode.get(n.inode)
    if (g === undefined) byInode.set(n.inode, [path]); else g.push(path)
  }
  const out = new Map<string, string>()
  for (const paths of byInode.values()) {
    if (paths.length < 2) continue
    const text = paths.sort().map(p => printableBytes(Buffer.from(p, 'latin1'))).join(', ')
    for (const p of paths) out.set(p, text)
  }
  return out
}

function shownValue (attribute: Attribute, v: string | undefined): string {
  if (v === undefined) return ''
  if (attribute === 'mtime' || attribute === 'atime') return formatPaxTime(BigInt(v))
  if (attribute === 'target') return printableBytes(Buffer.from(v, 'latin1'))
  return v.trimEnd().replace(/\n/g, ',')
}

/** Every way in which `actual` differs from `expected`, in path order. */
export function diffSnapshots (expected: Snapshot, actual: Snapshot, opts: CompareOptions = {}): Difference[] {
  const ignore = new Set(opts.ignore ?? [])
  for (const a of ignore) {
    if (!(ATTRIBUTES as readonly string[]).includes(a)) throw new SiError('ERR_INVALID_ARGUMENT', `unknown attribute "${a}" to ignore; known: ${ATTRIBUTES.join(', ')}`)
  }
  const eLinks = linkGroups(expected)
  const aLinks = linkGroups(actual)
  const paths = [...new Set([...expected.keys(), ...actual.keys()])].sort()
  const diffs: Difference[] = []
  for (const key of paths) {
    const path = key === '' ? ROOT : printableBytes(Buffer.from(key, 'latin1'))
    const e = expected.get(key)
    const x = actual.get(key)
    if (e === undefined || x === undefined) {
      diffs.push({ path, attribute: 'presence', expected: e !== undefined ? 'present' : 'absent', actual: x !== undefined ? 'present' : 'absent' })
      continue
    }
    if (e.type !== x.type) {
      diffs.push({ path, attribute: 'type', expected: e.type, actual: x.type })
      continue
    }
    for (const attr of ATTRIBUTES) {
      if (ignore.has(attr)) continue
      const ev = attr === 'hardlinks' ? eLinks.get(key) : e[attr]
      const xv = attr === 'hardlinks' ? aLinks.get(key) : x[attr]
      if ((ev ?? '') !== (xv ?? '')) diffs.push({ path, attribute: attr, expected: shownValue(attr, ev), actual: shownValue(attr, xv) })
    }
  }
  return diffs
}

/** Every way in which tree `b` differs from tree `a` (the expected one), in path order. */
export async function compareTrees (a: string, b: string, opts: CompareOptions = {}): Promise<Difference[]> {
  const expected = await snapshotTree(a)
  const actual = await snapshotTree(b)
  return diffSnapshots(expected, actual, opts)
}

/** One line per difference, for people. */
export function formatDifference (d: Difference): string {
  return `${d.path}: ${d.attribute}: expected ${d.expected || '(none)'}, found ${d.actual || '(none)'}`
}
