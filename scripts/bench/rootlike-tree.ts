// A generated tree shaped like a Linux root file system, for measuring what a cluster
// image costs to pack and install: about ENTRIES entries, most of them small files
// (log-normal sizes, median about 2 KiB, as measured on Debian's /usr), directories,
// symbolic links, a few hard links and set-uid files, and a handful of large libraries.
// The same options give the same tree, byte for byte, so a cached copy is reused.
import { createCipheriv } from 'node:crypto'
import { chmodSync, closeSync, existsSync, linkSync, lutimesSync, mkdirSync, openSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs'
import { dirname, join } from 'node:path'

export const DEFAULT_ENTRIES = 64_000
export const DEFAULT_SEED = 1
/** log-normal file sizes: median e^MU bytes, spread SIGMA (Debian /usr: median ~2 KiB). */
const SIZE_MU = Math.log(2048)
const SIZE_SIGMA = 1.85
const MAX_SMALL_FILE_BYTES = 8 * 1024 * 1024
/** What a root file system holds besides its many small files (bytes). */
const LARGE_FILES = [48, 32, 24, 16, 12, 8, 8, 6, 4, 4].map((mib, i) => ({ path: `usr/lib/x86_64-linux-gnu/liblarge${i}.so.1`, bytes: mib * 1024 * 1024 }))
/** Shares of the entries that are not regular files. */
const DIRECTORY_SHARE = 0.11
const SYMLINK_SHARE = 0.07
const HARDLINK_SHARE = 0.004
const SETUID_SHARE = 0.0005
/** Files per directory at most, as in a real /usr/share/doc or /usr/lib. */
const DIRECTORY_FANOUT = 24
const TOP_DIRS = ['usr/bin', 'usr/lib', 'usr/share/doc', 'usr/share/man', 'usr/share/locale', 'usr/share/zoneinfo', 'usr/include', 'etc', 'var/lib', 'opt']
const POOL_BYTES = 16 * 1024 * 1024
const BASE_MTIME_SECONDS = 1_717_200_000
const MTIME_SPREAD_SECONDS = 365 * 86_400
/**
 * Every atime lies in 2100, so that reading the tree (packing it, tar -c) leaves it alone
 * under relatime: a moved atime would change the tarball from one run to the next.
 */
const ATIME_SECONDS = 4_102_444_800
const MARKER_SUFFIX = '.complete'

/** Deterministic 32-bit PRNG (mulberry32): the tree must not change between runs. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Incompressible, reproducible bytes (AES-CTR of zeros under a key made from the seed). */
function randomPool (seed: number): Buffer {
  const key = Buffer.alloc(16)
  key.writeUInt32BE(seed >>> 0)
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
  return Buffer.concat([cipher.update(Buffer.alloc(POOL_BYTES)), cipher.final()])
}

export interface RootlikeSummary { dir: string; entries: number; bytes: number; files: number; directories: number; symlinks: number; hardlinks: number }

/**
 * Makes the tree in `dir` unless a complete one made with the same options is there
 * already; a partial one (a run that was interrupted) is removed and made again.
 */
export function ensureRootlikeTree (dir: string, opts: { entries?: number; seed?: number } = {}): RootlikeSummary {
  const entries = opts.entries ?? DEFAULT_ENTRIES
  const seed = opts.seed ?? DEFAULT_SEED
  const marker = `${dir}${MARKER_SUFFIX}`
  const wanted = JSON.stringify({ entries, seed, version: 2 })
  if (existsSync(marker)) {
    const [head, summary] = readMarker(marker)
    if (head === wanted) return summary
  }
  rmSync(dir, { recursive: true, force: true })
  rmSync(marker, { force: true })
  const summary = generate(dir, entries, seed)
  writeFileSync(marker, `${wanted}\n${JSON.stringify(summary)}\n`)
  return summary
}

function readMarker (marker: string): [string, RootlikeSummary] {
  const [head, body] = readFileSync(marker, 'utf8').split('\n')
  return [head, JSON.parse(body) as RootlikeSummary]
}

function generate (dir: string, entries: number, seed: number): RootlikeSummary {
  const random = prng(seed)
  const pool = randomPool(seed)
  const mtime = (): number => BASE_MTIME_SECONDS + Math.floor(random() * MTIME_SPREAD_SECONDS)
  const directories: string[] = []
  const files: string[] = []
  let bytes = 0
  let symlinks = 0
  let hardlinks = 0

  const directoryCount = Math.max(TOP_DIRS.length, Math.round(entries * DIRECTORY_SHARE))
  for (const d of TOP_DIRS) { mkdirSync(join(dir, d), { recursive: true }); directories.push(d) }
  while (directories.length < directoryCount) {
    const parent = directories[Math.floor(random() * directories.length)]
    const name = join(parent, `d${directories.length.toString(36)}`)
    mkdirSync(join(dir, name))
    directories.push(name)
  }

  const writeFileOf = (rel: string, size: number, mode: number): void => {
    const fd = openSync(join(dir, rel), 'wx', mode)
    try {
      let left = size
      let offset = Math.floor(random() * POOL_BYTES)
      while (left > 0) {
        const n = Math.min(left, POOL_BYTES - offset)
        writeSync(fd, pool, offset, n)
        left -= n
        offset = 0
      }
    } finally {
      closeSync(fd)
    }
    chmodSync(join(dir, rel), mode)
    bytes += size
  }

  for (const f of LARGE_FILES) {
    mkdirSync(join(dir, dirname(f.path)), { recursive: true })
    writeFileOf(f.path, f.bytes, 0o644)
    files.push(f.path)
  }
  const fileCount = Math.round(entries * (1 - DIRECTORY_SHARE - SYMLINK_SHARE - HARDLINK_SHARE)) - LARGE_FILES.length
  const perDirectory = new Map<string, number>()
  for (let i = 0; i < fileCount; i++) {
    let parent = directories[Math.floor(random() * directories.length)]
    if ((perDirectory.get(parent) ?? 0) >= DIRECTORY_FANOUT) parent = directories[i % directories.length]
    perDirectory.set(parent, (perDirectory.get(parent) ?? 0) + 1)
    const rel = join(parent, `f${i.toString(36)}${parent.includes('bin') ? '' : '.dat'}`)
    const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random())
    const size = Math.min(MAX_SMALL_FILE_BYTES, Math.round(Math.exp(SIZE_MU + SIZE_SIGMA * normal)))
    const mode = random() < SETUID_SHARE ? 0o4755 : parent.includes('bin') ? 0o755 : 0o644
    writeFileOf(rel, size, mode)
    files.push(rel)
  }
  const symlinkCount = Math.round(entries * SYMLINK_SHARE)
  for (let i = 0; i < symlinkCount; i++) {
    const parent = directories[Math.floor(random() * directories.length)]
    const target = files[Math.floor(random() * files.length)]
    const rel = join(parent, `l${i.toString(36)}`)
    // Most links in a root file system are relative; some are absolute.
    symlinkSync(random() < 0.7 ? `../${target.split('/').pop() ?? 'x'}` : `/${target}`, join(dir, rel))
    lutimesSync(join(dir, rel), ATIME_SECONDS, mtime())
    symlinks++
  }
  const hardlinkCount = Math.round(entries * HARDLINK_SHARE)
  for (let i = 0; i < hardlinkCount; i++) {
    const target = files[Math.floor(random() * files.length)]
    linkSync(join(dir, target), join(dir, `${target}.hl${i.toString(36)}`))
    hardlinks++
  }
  for (const f of files) utimesSync(join(dir, f), ATIME_SECONDS, mtime())
  // Directories last: creating their entries moved their times.
  for (const d of [...directories].reverse()) utimesSync(join(dir, d), ATIME_SECONDS, mtime())
  return { dir, entries: directories.length + files.length + symlinks + hardlinks, bytes, files: files.length, directories: directories.length, symlinks, hardlinks }
}
