// A small root-like tree to deploy in the demo: etc/, usr/bin, usr/lib with files of
// many sizes, symlinks (relative, absolute, merged-/usr style), a hard link, special
// modes and empty directories, so the demo exercises what a real image carries.
// Contents and mtimes come from a seeded PRNG: the same options give the same
// bytes, hence the same tarball and info hash on every run, yet the data does not
// compress to nothing the way zero-filled files would.
import { chmod, link, lutimes, mkdir, open, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { SiError } from '../../src/errors.ts'

export const DEFAULT_SEED = 0x5eed1e55
/** The whole tree is dated around here; fixed so the tarball is reproducible. */
const BASE_MTIME_SECONDS = 1_717_200_000
const MTIME_SPREAD_SECONDS = 90 * 86_400
/**
 * Every atime lies in the future (2100-01-01) on purpose. Under relatime, the default
 * mount option, any read refreshes an atime that is not newer than the ctime or is a day
 * old: the packer's readlink of a symlink would then make the source differ from its own
 * image in a tree comparison that checks atimes. A future atime is left alone.
 */
const ATIME_SECONDS = 4_102_444_800
/** Bytes generated per write: bounds memory whatever the file size. */
const CHUNK_BYTES = 1024 * 1024
/** Below this, the large files would vanish next to the fixed small ones. */
export const MIN_TOTAL_BYTES = 1_000_000

/** Large files, sized as shares of what is left once the small files are written. */
const BULK_FILES: Array<{ path: string; share: number; mode?: number }> = [
  { path: 'usr/lib/x86_64-linux-gnu/libLLVM-15.so.1', share: 22 },
  { path: 'usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0', share: 11 },
  { path: 'usr/lib/x86_64-linux-gnu/libcrypto.so.3', share: 9 },
  { path: 'usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30', share: 5 },
  { path: 'usr/lib/x86_64-linux-gnu/libc.so.6', share: 4 },
  { path: 'usr/lib/x86_64-linux-gnu/libssl.so.3', share: 2.5 },
  { path: 'usr/lib/x86_64-linux-gnu/libz.so.1.2.13', share: 0.5 },
  { path: 'usr/lib/locale/C.utf8/LC_COLLATE', share: 3 },
  { path: 'usr/bin/python3.11', share: 13, mode: 0o755 },
  { path: 'usr/bin/vim.basic', share: 7, mode: 0o755 },
  { path: 'usr/bin/perl', share: 7, mode: 0o755 },
  { path: 'usr/bin/bash', share: 3, mode: 0o755 },
  { path: 'usr/bin/ssh', share: 2, mode: 0o755 },
  { path: 'usr/bin/tar', share: 1.5, mode: 0o755 },
  { path: 'usr/bin/gzip', share: 0.3, mode: 0o755 },
  { path: 'usr/bin/su', share: 0.2, mode: 0o4755 }
]

/** Small configuration files: generated text of about this many bytes. */
const TEXT_FILES: Array<{ path: string; bytes: number; mode?: number }> = [
  { path: 'etc/hostname', bytes: 0 },
  { path: 'etc/hosts', bytes: 200 },
  { path: 'etc/fstab', bytes: 400 },
  { path: 'etc/passwd', bytes: 0 },
  { path: 'etc/group', bytes: 0 },
  { path: 'etc/shadow', bytes: 600, mode: 0o640 },
  { path: 'etc/ssh/sshd_config', bytes: 3_300 },
  { path: 'etc/ssh/ssh_host_ed25519_key', bytes: 400, mode: 0o600 },
  { path: 'etc/apt/sources.list', bytes: 300 },
  { path: 'etc/default/grub', bytes: 1_200 },
  { path: 'etc/security/limits.conf', bytes: 2_100 },
  { path: 'etc/sysctl.conf', bytes: 2_400 },
  { path: 'usr/lib/os-release', bytes: 0 },
  { path: 'usr/share/zoneinfo/Etc/UTC', bytes: 120 },
  { path: 'usr/share/common-licenses/GPL-2', bytes: 18_000 },
  { path: 'root/.bashrc', bytes: 600, mode: 0o600 }
]
/** usr/share/doc/PKG/copyright for each of these: many small files, as in a real system. */
const DOC_PACKAGES = ['bash', 'coreutils', 'gzip', 'libc6', 'libssl3', 'openssh-server', 'perl', 'python3.11', 'tar', 'vim', 'zlib1g', 'llvm-15']
const DOC_BYTES = { min: 800, max: 24_000 }

const SYMLINKS: Array<{ path: string; target: string }> = [
  // merged /usr, as on Debian 12
  { path: 'bin', target: 'usr/bin' },
  { path: 'lib', target: 'usr/lib' },
  { path: 'usr/bin/python3', target: 'python3.11' },
  { path: 'usr/bin/vi', target: '/etc/alternatives/vi' },
  { path: 'etc/alternatives/vi', target: '/usr/bin/vim.basic' },
  { path: 'etc/localtime', target: '/usr/share/zoneinfo/Etc/UTC' },
  { path: 'etc/os-release', target: '../usr/lib/os-release' },
  { path: 'usr/lib/x86_64-linux-gnu/libz.so.1', target: 'libz.so.1.2.13' },
  { path: 'usr/lib/x86_64-linux-gnu/libstdc++.so.6', target: 'libstdc++.so.6.0.30' },
  { path: 'usr/lib/x86_64-linux-gnu/libpython3.11.so', target: 'libpython3.11.so.1.0' },
  // dangling on purpose: images carry links to what only exists at run time
  { path: 'etc/mtab', target: '../proc/self/mounts' }
]
const HARDLINKS: Array<{ path: string; existing: string }> = [
  { path: 'usr/bin/perl5.36.0', existing: 'usr/bin/perl' }
]
const EMPTY_DIRS: Array<{ path: string; mode: number }> = [
  { path: 'dev', mode: 0o755 },
  { path: 'proc', mode: 0o555 },
  { path: 'sys', mode: 0o555 },
  { path: 'home', mode: 0o755 },
  { path: 'mnt', mode: 0o755 },
  { path: 'tmp', mode: 0o1777 },
  { path: 'var/tmp', mode: 0o1777 },
  { path: 'var/log/apt', mode: 0o755 },
  { path: 'var/cache/apt/archives/partial', mode: 0o700 }
]
const ROOT_HOME_MODE = 0o700

const WORDS = ('the of and to in is for on with as by that this from be are or an it at not ' +
  'kernel module service network interface address route daemon socket user group file path ' +
  'permission mount device partition boot loader option value default enable disable allow ' +
  'deny timeout limit buffer cache memory process thread signal session login shell').split(' ')

export interface SampleImageStats {
  root: string
  /** bytes of regular-file content */
  bytes: number
  files: number
  directories: number
  symlinks: number
  hardlinks: number
}

/**
 * A 32-bit xorshift generator (Marsaglia, 2003): not for cryptography, just fast and
 * repeatable. The state is scrambled from the seed so that nearby seeds diverge.
 */
export class Prng {
  private x: number
  private y: number
  private z: number
  private w: number

  constructor (seed: number) {
    let s = seed >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let t = s
      t = Math.imul(t ^ (t >>> 16), 0x85ebca6b) >>> 0
      t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35) >>> 0
      return (t ^ (t >>> 16)) >>> 0
    }
    this.x = next(); this.y = next(); this.z = next(); this.w = next() | 1
  }

  nextUint32 (): number {
    const t = this.x ^ (this.x << 11)
    this.x = this.y; this.y = this.z; this.z = this.w
    this.w = (this.w ^ (this.w >>> 19) ^ (t ^ (t >>> 8))) >>> 0
    return this.w
  }

  /** An integer in [min, max]. */
  int (min: number, max: number): number {
    return min + Math.floor(this.nextUint32() / 0x1_0000_0000 * (max - min + 1))
  }

  fill (buf: Buffer): void {
    const words = Math.floor(buf.length / 4)
    for (let i = 0; i < words; i++) buf.writeUInt32LE(this.nextUint32(), i * 4)
    for (let i = words * 4; i < buf.length; i++) buf[i] = this.nextUint32() & 0xff
  }
}

/** Writes the tree under `root` (which must not exist yet); `totalBytes` of file content in all. */
export async function makeSampleImage (root: string, totalBytes: number, seed = DEFAULT_SEED): Promise<SampleImageStats> {
  if (!Number.isFinite(totalBytes) || totalBytes < MIN_TOTAL_BYTES) {
    throw new SiError('ERR_INVALID_ARGUMENT', `sample image size ${totalBytes} bytes: at least ${MIN_TOTAL_BYTES} needed`)
  }
  const rng = new Prng(seed)
  const stats: SampleImageStats = { root, bytes: 0, files: 0, directories: 0, symlinks: 0, hardlinks: 0 }
  const dirs = new Set<string>()
  const ensureParent = async (rel: string): Promise<void> => {
    for (let d = dirname(rel); d !== '.' && !dirs.has(d); d = dirname(d)) dirs.add(d)
    await mkdir(join(root, dirname(rel)), { recursive: true })
  }
  await mkdir(root)

  const texts = [
    ...TEXT_FILES.map(f => ({ ...f, content: fixedText(f.path) ?? prose(rng, f.bytes) })),
    ...DOC_PACKAGES.map(pkg => ({ path: `usr/share/doc/${pkg}/copyright`, mode: undefined, content: prose(rng, rng.int(DOC_BYTES.min, DOC_BYTES.max)) }))
  ]
  for (const f of texts) {
    await ensureParent(f.path)
    await writeFile(join(root, f.path), f.content)
    if (f.mode !== undefined) await chmod(join(root, f.path), f.mode)
    stats.files++
    stats.bytes += Buffer.byteLength(f.content)
  }

  const bulk = Math.max(0, totalBytes - stats.bytes)
  const shares = BULK_FILES.reduce((sum, f) => sum + f.share, 0)
  let left = bulk
  for (const [i, f] of BULK_FILES.entries()) {
    // The last file takes the rounding remainder so the total is exact.
    const size = i === BULK_FILES.length - 1 ? left : Math.floor(bulk * f.share / shares)
    left -= size
    await ensureParent(f.path)
    await writeRandomFile(join(root, f.path), size, rng)
    if (f.mode !== undefined) await chmod(join(root, f.path), f.mode)
    stats.files++
    stats.bytes += size
  }

  for (const l of HARDLINKS) {
    await ensureParent(l.path)
    await link(join(root, l.existing), join(root, l.path))
    stats.hardlinks++
  }
  for (const s of SYMLINKS) {
    await ensureParent(s.path)
    await symlink(s.target, join(root, s.path))
    stats.symlinks++
  }
  for (const d of EMPTY_DIRS) {
    await mkdir(join(root, d.path), { recursive: true })
    for (let p = d.path; p !== '.'; p = dirname(p)) dirs.add(p)
  }
  for (const d of EMPTY_DIRS) await chmod(join(root, d.path), d.mode)
  dirs.add('root')
  await mkdir(join(root, 'root'), { recursive: true })
  await chmod(join(root, 'root'), ROOT_HOME_MODE)
  stats.directories = dirs.size + 1

  await stampTimes(root, [...texts.map(f => f.path), ...BULK_FILES.map(f => f.path), ...SYMLINKS.map(s => s.path)], dirs, rng)
  return stats
}

/** Files whose content must make sense to anyone who looks at the image. */
function fixedText (path: string): string | undefined {
  switch (path) {
    case 'etc/hostname': return 'demo-node\n'
    case 'etc/passwd': return 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n'
    case 'etc/group': return 'root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n'
    case 'usr/lib/os-release': return 'PRETTY_NAME="swarmimager demo image"\nNAME="Demo"\nID=demo\nVERSION_ID="1"\n'
    default: return undefined
  }
}

function prose (rng: Prng, bytes: number): string {
  const lines: string[] = []
  let size = 0
  while (size < bytes) {
    const words: string[] = []
    for (let n = rng.int(4, 12); n > 0; n--) words.push(WORDS[rng.int(0, WORDS.length - 1)])
    const line = (rng.int(0, 5) === 0 ? '# ' : '') + words.join(' ')
    lines.push(line)
    size += line.length + 1
  }
  return lines.join('\n') + '\n'
}

async function writeRandomFile (path: string, size: number, rng: Prng): Promise<void> {
  const fh = await open(path, 'wx')
  try {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(size, 1)))
    for (let done = 0; done < size;) {
      const n = Math.min(buf.length, size - done)
      const chunk = buf.subarray(0, n)
      rng.fill(chunk)
      await fh.write(chunk, 0, n)
      done += n
    }
  } finally {
    await fh.close()
  }
}

/** Deterministic mtimes; directories last and deepest first, since creating entries touches them. */
async function stampTimes (root: string, entries: string[], dirs: Set<string>, rng: Prng): Promise<void> {
  const stamp = (): number => BASE_MTIME_SECONDS + rng.int(0, MTIME_SPREAD_SECONDS)
  for (const rel of entries) await lutimes(join(root, rel), ATIME_SECONDS, stamp())
  const ordered = [...dirs].sort((a, b) => b.split('/').length - a.split('/').length || a.localeCompare(b))
  for (const rel of [...ordered, '.']) await lutimes(join(root, rel), ATIME_SECONDS, stamp())
}
