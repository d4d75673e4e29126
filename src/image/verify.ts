// Compares two trees attribute by attribute, never following symlinks: what an
// installed node must match its image on. Used by the tests and, later, `verify`.
import { createHash } from 'node:crypto'
import { createReadStream, type BigIntStats } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { splitRdev } from './tar-attrs.ts'

/** Whole seconds for now (tar-stream's precision); lower it when pax carries nanoseconds. */
export const MTIME_RESOLUTION_NS = 1_000_000_000n
const ROOT = '.'
const SLASH = Buffer.from('/')

export interface Difference {
  path: string
  attribute: string
  expected: string
  actual: string
}

interface Node {
  type: string
  mode: string
  uid: string
  gid: string
  mtime: string
  size?: string
  content?: string
  target?: string
  device?: string
  /** Paths in the same tree sharing this inode, for non-directories with links. */
  links?: string
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

/** Readable when it is UTF-8, exact (hex) when it is not. */
function printable (bytes: Buffer): string {
  const s = bytes.toString('utf8')
  return Buffer.from(s, 'utf8').equals(bytes) ? s : `hex:${bytes.toString('hex')}`
}

async function sha256 (path: Buffer): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

function floorDiv (a: bigint, b: bigint): bigint {
  const q = a / b
  return a % b !== 0n && a < 0n ? q - 1n : q
}

async function scan (root: string): Promise<Map<string, Node>> {
  const nodes = new Map<string, Node>()
  const inodes = new Map<string, string[]>()
  const visit = async (rel: string, abs: Buffer): Promise<void> => {
    const st = await lstat(abs, { bigint: true })
    const node: Node = {
      type: typeOf(st),
      mode: (st.mode & 0o7777n).toString(8).padStart(4, '0'),
      uid: String(st.uid),
      gid: String(st.gid),
      mtime: String(floorDiv(st.mtimeNs, MTIME_RESOLUTION_NS))
    }
    nodes.set(rel, node)
    if (st.isFile()) {
      node.size = String(st.size)
      node.content = await sha256(abs)
    } else if (st.isSymbolicLink()) {
      node.target = printable(await readlink(abs, { encoding: 'buffer' }))
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const { major, minor } = splitRdev(st.rdev)
      node.device = `${major}:${minor}`
    }
    if (!st.isDirectory()) {
      const key = `${st.dev}:${st.ino}`
      const group = inodes.get(key)
      if (group === undefined) inodes.set(key, [rel]); else group.push(rel)
      return
    }
    const children = await readdir(abs, { encoding: 'buffer' })
    children.sort(Buffer.compare)
    for (const child of children) {
      // The raw bytes address the file; the printable form only names it in reports.
      const name = printable(child)
      await visit(rel === ROOT ? name : `${rel}/${name}`, Buffer.concat([abs, SLASH, child]))
    }
  }
  await visit(ROOT, Buffer.from(root))
  for (const paths of inodes.values()) {
    if (paths.length < 2) continue
    const group = [...paths].sort().join('\n')
    for (const p of paths) nodes.get(p)!.links = group
  }
  return nodes
}

const ATTRIBUTES: Array<keyof Node> = ['mode', 'uid', 'gid', 'size', 'content', 'target', 'device', 'mtime', 'links']

/** Every way in which tree `b` differs from tree `a` (the expected one), in path order. */
export async function compareTrees (a: string, b: string): Promise<Difference[]> {
  const [expected, actual] = await Promise.all([scan(a), scan(b)])
  const paths = [...new Set([...expected.keys(), ...actual.keys()])].sort()
  const diffs: Difference[] = []
  for (const path of paths) {
    const e = expected.get(path)
    const x = actual.get(path)
    if (e === undefined || x === undefined) {
      diffs.push({ path, attribute: 'presence', expected: e ? 'present' : 'absent', actual: x ? 'present' : 'absent' })
      continue
    }
    if (e.type !== x.type) {
      diffs.push({ path, attribute: 'type', expected: e.type, actual: x.type })
      continue
    }
    for (const attr of ATTRIBUTES) {
      const ev = e[attr] ?? ''
      const xv = x[attr] ?? ''
      if (ev !== xv) diffs.push({ path, attribute: attr === 'links' ? 'hardlinks' : attr, expected: ev, actual: xv })
    }
  }
  return diffs
}
