// Fixture trees for the fidelity suites: one entry or more for each attribute class a
// Linux root file system carries, and the cached debootstrap tree.
import { spawnSync } from 'node:child_process'
import { chmod, lchown, link, mkdir, open, rename, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const CACHE_DIR = process.env.SI_TEST_CACHE ?? '/var/cache/swarmimager-test'
export const DEBOOTSTRAP_SUITE = 'bookworm'
export const DEBOOTSTRAP_MIRROR = process.env.SI_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian'
const DEBOOTSTRAP_TIMEOUT_MS = 10 * 60 * 1000

export const HIGH_UID = 3_000_000_000
export const HIGH_GID = 300_001
export const GIB = 1024 * 1024 * 1024
/** v2 capability blob for cap_net_raw+ep, as setcap writes it. */
export const CAP_NET_RAW = Buffer.from('0100000200200000000000000000000000000000', 'hex')
export const BINARY_XATTR = Buffer.from([0x00, 0xff, 0x0a, 0x3d, 0x25, 0x80, 0x00])
export const LATIN1_NAME = Buffer.from('caf\xe9-latin1', 'latin1')

export function run (cmd: string, args: string[], opts: { timeout?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.timeout ?? 60_000, maxBuffer: 256 * 1024 * 1024 })
  return { status: r.status, stdout: r.stdout?.toString() ?? '', stderr: r.stderr?.toString() ?? (r.error?.message ?? '') }
}

export function must (cmd: string, args: string[]): string {
  const r = run(cmd, args)
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`)
  return r.stdout
}

export function hasTool (tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0
}

/**
 * The cached `debootstrap --variant=minbase` tree, made once (about 30 s with a mirror).
 * Returns undefined (with the reason) when it cannot be made here.
 */
export async function debootstrapTree (): Promise<{ dir?: string; why?: string }> {
  const dir = join(CACHE_DIR, `${DEBOOTSTRAP_SUITE}-minbase`)
  try {
    if ((await stat(join(dir, 'etc', 'os-release'))).isFile()) return { dir }
  } catch { /* not cached yet */ }
  if (!hasTool('debootstrap')) return { why: 'debootstrap is not installed' }
  const tmp = `${dir}.tmp-${process.pid}`
  await mkdir(CACHE_DIR, { recursive: true })
  await rm(tmp, { recursive: true, force: true })
  const r = run('debootstrap', ['--variant=minbase', DEBOOTSTRAP_SUITE, tmp, DEBOOTSTRAP_MIRROR], { timeout: DEBOOTSTRAP_TIMEOUT_MS })
  if (r.status !== 0) {
    await rm(tmp, { recursive: true, force: true })
    return { why: `debootstrap failed (no mirror?): ${r.stderr.split('\n').slice(-3).join(' ')}` }
  }
  await rename(tmp, dir)
  return { dir }
}

/** Writes `chunks` at their offsets, leaving holes between, then sets the size. */
async function sparseFile (path: string, size: number, chunks: Array<[number, Buffer]>): Promise<void> {
  const fh = await open(path, 'w')
  try {
    for (const [offset, data] of chunks) await fh.write(data, 0, data.length, offset)
    await fh.truncate(size)
  } finally {
    await fh.close()
  }
}

export interface FixtureOptions {
  /** Include the 9 GiB sparse file (cheap on ext4/tmpfs: only a few blocks are written). */
  huge?: boolean
}

/** A tree with every attribute class, times set last and to the nanosecond. */
export async function buildFixtureTree (root: string, opts: FixtureOptions = {}): Promise<void> {
  const p = (rel: string): string => join(root, rel)
  await mkdir(p('usr/bin'), { recursive: true })
  await mkdir(p('etc'), { recursive: true })
  await writeFile(p('etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nhigh:x:3000000000:300001::/:/bin/false\n')
  await writeFile(p('etc/group'), 'root:x:0:\nhigh:x:300001:\n')

  // Capabilities, binary xattrs (user and trusted), a name with "=" and "%".
  await writeFile(p('usr/bin/ping'), '#!/bin/sh\necho ping\n')
  await chmod(p('usr/bin/ping'), 0o755)
  must('setfattr', ['-n', 'security.capability', '-v', `0x${CAP_NET_RAW.toString('hex')}`, p('usr/bin/ping')])
  await writeFile(p('xattr-file'), 'has xattrs\n')
  must('setfattr', ['-n', 'user.binary', '-v', `0x${BINARY_XATTR.toString('hex')}`, p('xattr-file')])
  must('setfattr', ['-n', 'user.text', '-v', 'plain text value', p('xattr-file')])
  must('setfattr', ['-n', 'user.odd=name%25', '-v', '0x01', p('xattr-file')])
  must('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', p('xattr-file')])
  must('setfattr', ['-n', 'user.empty', p('xattr-file')])
  await mkdir(p('xattr-dir'))
  must('setfattr', ['-n', 'user.on-dir', '-v', '0xdeadbeef', p('xattr-dir')])

  // ACLs: access with named entries and a mask, default on a directory.
  await writeFile(p('acl-file'), 'acl\n')
  must('setfacl', ['-m', 'u:1234:rwx,g:55:r--,u:3000000000:r', p('acl-file')])
  await mkdir(p('acl-dir'))
  must('setfacl', ['-m', 'u:1234:rx', p('acl-dir')])
  must('setfacl', ['-d', '-m', 'u:1234:rwx,g:55:rx', p('acl-dir')])

  // Devices, including numbers beyond tar-stream's 6 octal digits, and a FIFO.
  await mkdir(p('dev'))
  must('mknod', ['-m', '666', p('dev/null'), 'c', '1', '3'])
  must('mknod', ['-m', '660', p('dev/sda1'), 'b', '8', '1'])
  must('mknod', ['-m', '600', p('dev/high'), 'c', '4095', '1048575'])
  must('mkfifo', ['-m', '620', p('dev/initctl')])

  // Hard links (three names, across directories, one with a capability).
  await mkdir(p('links'))
  await writeFile(p('links/one'), 'three names\n')
  await link(p('links/one'), p('links/two'))
  await link(p('links/one'), p('usr/bin/three'))
  await link(p('usr/bin/ping'), p('links/ping-again'))

  // Sparse files: holes in the middle, at the end, only a hole; and a 9 GiB one.
  await sparseFile(p('sparse-middle'), 4 * 1024 * 1024, [[0, Buffer.alloc(8192, 1)], [3 * 1024 * 1024, Buffer.alloc(5000, 2)]])
  await sparseFile(p('sparse-tail'), 2 * 1024 * 1024, [[0, Buffer.from('head')]])
  await sparseFile(p('sparse-empty'), 1024 * 1024, [])
  if (opts.huge === true) {
    await sparseFile(p('sparse-9g'), 9 * GIB + 12345, [[0, Buffer.from('start')], [4 * GIB, Buffer.alloc(65536, 7)], [9 * GIB, Buffer.from('end of a 9 GiB file')]])
  }
  await writeFile(p('dense-zeros'), Buffer.alloc(64 * 1024 + 3)) // zeros written: not sparse

  // Empty things, modes, owners.
  await writeFile(p('empty-file'), '')
  await mkdir(p('empty-dir'))
  await writeFile(p('suid'), '#!/bin/sh\n'); await chmod(p('suid'), 0o4755)
  await writeFile(p('sgid'), '#!/bin/sh\n'); await chmod(p('sgid'), 0o2711)
  await mkdir(p('tmp')); await chmod(p('tmp'), 0o1777)
  await mkdir(p('sgid-dir')); await chmod(p('sgid-dir'), 0o2775)
  await writeFile(p('no-perms'), 'secret'); await chmod(p('no-perms'), 0o000)
  await writeFile(p('high-owner'), 'owned by 3000000000\n')
  await lchown(p('high-owner'), HIGH_UID, HIGH_GID)
  await chmod(p('high-owner'), 0o6750) // chown cleared setuid/setgid: set them after

  // Symlinks: relative, absolute, dangling, long target, owned by someone.
  await symlink('usr/bin/ping', p('rel-link'))
  await symlink('/etc/passwd', p('abs-link'))
  await symlink('/no/such/target', p('dangling'))
  await symlink('/' + 't'.repeat(300), p('long-target'))
  await lchown(p('dangling'), 1000, 1000)
  must('setfattr', ['-h', '-n', 'trusted.on-symlink', '-v', 'x', p('abs-link')])

  // Names: not UTF-8, newline, backslash, spaces, long path and long component.
  await writeFile(Buffer.from(join(root, LATIN1_NAME.toString('latin1')), 'latin1'), 'latin-1 name\n')
  await mkdir(Buffer.from(join(root, 'dir-\xff\xfe'), 'latin1'))
  await writeFile(Buffer.from(join(root, 'dir-\xff\xfe', 'inside-\x80'), 'latin1'), 'x')
  await writeFile(p('new\nline'), 'newline in name\n')
  await writeFile(p('back\\slash = and spaces'), 'odd\n')
  await writeFile(p('ünïcødé-名前.txt'), 'utf-8 name\n')
  const deep = ['a'.repeat(100), 'b'.repeat(120), 'c'.repeat(150)].join('/')
  await mkdir(p(deep), { recursive: true })
  await writeFile(p(`${deep}/${'f'.repeat(255)}`), 'long path\n')

  await applyTimes(root)
}

// ns times on everything, deepest first so children do not bump their parents afterwards.
// Varied: sub-microsecond parts, whole microseconds, whole seconds, before 1970, far
// future. A shell loop, because find hands it names that are not UTF-8 unchanged.
const TIMES_SCRIPT = `
i=0
find "$1" -depth -print0 | while IFS= read -r -d '' f; do
  i=$((i+1))
  pick() { case $(($1 % 3)) in
    0) echo "$((1500000000+$1)).$(printf %09d $((123456789+$1)))" ;;
    1) echo "$((1600000000+$1)).000001000" ;;
    2) echo "$((1700000000+$1))" ;;
  esac; }
  m=$(pick $i); a=$(pick $((i+1)))
  case "$f" in */suid) m=-86400.5 ;; */sgid) m=13000000000.25 ;; esac
  touch -h -m -d "@$m" -- "$f" && touch -h -a -d "@$a" -- "$f" || exit 1
done
`

async function applyTimes (root: string): Promise<void> {
  must('bash', ['-c', TIMES_SCRIPT, 'fixture-times', root])
}
