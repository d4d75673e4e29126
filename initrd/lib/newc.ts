// The kernel's initramfs format: "newc" cpio (ASCII hex headers, 4-byte alignment).
// Written here rather than by cpio(1) so every entry is owned by root with a fixed
// mtime whatever the build machine's files say: the archive is reproducible and needs
// no fakeroot.
import { SiError } from '../../src/errors.ts'

const MAGIC = '070701'
const TRAILER = 'TRAILER!!!'
const ALIGN = 4
const S_IFMT = 0o170000
const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const S_IFCHR = 0o020000
/** The header's fields are 8 hex digits. */
const MAX_FIELD = 0xffffffff

export type Entry =
  | { type: 'dir'; path: string; mode: number }
  | { type: 'file'; path: string; mode: number; data: Buffer }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; mode: number; major: number; minor: number }

export interface NewcOptions {
  /** seconds since the epoch written as every entry's mtime */
  mtime: number
}

function hex (n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > MAX_FIELD) throw new SiError('ERR_INITRD', `cpio field out of range: ${n}`)
  return n.toString(16).padStart(8, '0')
}

function padding (length: number): Buffer {
  return Buffer.alloc((ALIGN - (length % ALIGN)) % ALIGN)
}

function record (name: string, ino: number, mode: number, mtime: number, data: Buffer, rdev = { major: 0, minor: 0 }): Buffer[] {
  const nameBytes = Buffer.from(name + '\0')
  const header = MAGIC + [
    ino, mode, 0, 0, // ino, mode, uid, gid
    (mode & S_IFMT) === S_IFDIR ? 2 : 1, // nlink
    mtime, data.length,
    0, 0, rdev.major, rdev.minor, // dev and rdev major/minor
    nameBytes.length, 0 // name size (with its NUL), check
  ].map(hex).join('')
  const head = Buffer.concat([Buffer.from(header, 'ascii'), nameBytes])
  return [head, padding(head.length), data, padding(data.length)]
}

/** Archive path: relative, no leading slash, no "." or ".." parts. */
export function archivePath (path: string): string {
  const parts = path.split('/').filter(p => p !== '' && p !== '.')
  if (parts.length === 0 || parts.includes('..')) throw new SiError('ERR_INITRD', `invalid initramfs path ${JSON.stringify(path)}`)
  return parts.join('/')
}

/**
 * One complete archive (with its trailer). Parent directories missing from `entries`
 * are added, so an archive can be unpacked on its own or after others: the kernel
 * accepts several concatenated archives and merges them.
 */
export function newcArchive (entries: Entry[], opts: NewcOptions): Buffer {
  const chunks: Buffer[] = []
  const seen = new Set<string>()
  let ino = 1
  const add = (name: string, mode: number, data: Buffer, rdev?: { major: number; minor: number }): void => { chunks.push(...record(name, ino++, mode, opts.mtime, data, rdev)) }
  const ensureParents = (path: string): void => {
    const parts = path.split('/')
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/')
      if (seen.has(dir)) continue
      seen.add(dir)
      add(dir, S_IFDIR | 0o755, Buffer.alloc(0))
    }
  }
  for (const entry of entries) {
    const path = archivePath(entry.path)
    if (seen.has(path)) throw new SiError('ERR_INITRD', `initramfs path ${path} given twice`)
    ensureParents(path)
    seen.add(path)
    if (entry.type === 'dir') add(path, S_IFDIR | (entry.mode & 0o7777), Buffer.alloc(0))
    else if (entry.type === 'file') add(path, S_IFREG | (entry.mode & 0o7777), entry.data)
    else if (entry.type === 'chardev') add(path, S_IFCHR | (entry.mode & 0o7777), Buffer.alloc(0), entry)
    else add(path, S_IFLNK | 0o777, Buffer.from(entry.target))
  }
  add(TRAILER, 0, Buffer.alloc(0))
  return Buffer.concat(chunks)
}
