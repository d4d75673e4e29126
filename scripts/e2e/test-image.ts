// A small root file system for install tests: busybox as its userland (so post-install
// steps have a /bin/sh), the kinds of entries a real image has (hard links, symlinks,
// a FIFO, device nodes, setuid, other owners, old mtimes), and some megabytes of
// deterministic data so the swarm has pieces to trade.
import { createHash } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { chmod, chown, copyFile, link, lutimes, mkdir, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../../src/errors.ts'

export const BUSYBOX = '/bin/busybox'
const APPLETS = ['sh', 'ls', 'cat', 'echo', 'mkdir', 'rm', 'cp', 'mv', 'ln', 'chmod', 'sleep', 'true', 'false', 'test', 'grep', 'sed', 'mount', 'umount', 'hostname']
const OLD_MTIME = new Date('2001-09-09T01:46:40Z')
const DATA_FILE_BYTES = 512 * 1024
/** Where the e2e layout mounts its xfs file system: data lands there too. */
export const SRV_DIR = 'srv'

/** Deterministic bytes: SHA-256 in counter mode over a seed. */
export function pseudoRandom (seed: string, length: number): Buffer {
  const out = Buffer.alloc(length)
  for (let off = 0, i = 0; off < length; i++) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest()
    off += block.copy(out, off)
  }
  return out
}

function mknod (path: string, type: 'c' | 'p', major = 0, minor = 0): void {
  const args = type === 'p' ? ['mkfifo', '-m', '644', path] : ['mknod', '-m', '666', path, 'c', String(major), String(minor)]
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8' })
  if (r.status !== 0) throw new SiError('ERR_COMMAND_FAILED', `${args.join(' ')}: ${r.stderr ?? r.error?.message}`)
}

export async function buildTestRoot (root: string, opts: { dataBytes: number }): Promise<void> {
  for (const d of ['bin', 'sbin', 'etc', 'dev', 'proc', 'sys', 'run', 'var/log', 'home/user', 'usr/share/doc/e2e', 'boot/efi', SRV_DIR]) {
    await mkdir(join(root, d), { recursive: true })
  }
  await mkdir(join(root, 'tmp'), { recursive: true })
  await chmod(join(root, 'tmp'), 0o1777)
  await mkdir(join(root, 'root'), { mode: 0o700 })
  await copyFile(BUSYBOX, join(root, 'bin/busybox'))
  await chmod(join(root, 'bin/busybox'), 0o755)
  for (const a of APPLETS) await symlink('busybox', join(root, 'bin', a))
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n')
  await writeFile(join(root, 'etc/group'), 'root:x:0:\nuser:x:1000:\n')
  await writeFile(join(root, 'etc/hostname'), 'unconfigured\n')
  await writeFile(join(root, 'etc/os-release'), 'NAME="swarmimager e2e"\nID=si-e2e\n')
  await writeFile(join(root, 'etc/fstab'), '# image fstab: the installer keeps non-disk lines\nproc /proc proc defaults 0 0\n/dev/sda1 / ext4 defaults 0 1\n')
  await writeFile(join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 })
  await chmod(join(root, 'etc/shadow'), 0o640)
  await writeFile(join(root, 'usr/share/doc/e2e/README'), 'Installed by swarmimager\'s end-to-end test.\n')
  await link(join(root, 'usr/share/doc/e2e/README'), join(root, 'usr/share/doc/e2e/README.hardlink'))
  await symlink('../usr/share/doc/e2e/README', join(root, 'etc/README'))
  await symlink('/nonexistent/target', join(root, 'etc/dangling'))
  await writeFile(join(root, 'usr/share/doc/e2e/empty'), '')
  await writeFile(join(root, 'sbin/setuid-tool'), '#!/bin/sh\necho hi\n')
  await chmod(join(root, 'sbin/setuid-tool'), 0o4755)
  await writeFile(join(root, 'home/user/notes'), 'owned by user\n')
  await chown(join(root, 'home/user/notes'), 1000, 1000)
  await chown(join(root, 'home/user'), 1000, 1000)
  mknod(join(root, 'dev/null'), 'c', 1, 3)
  mknod(join(root, 'dev/console'), 'c', 5, 1)
  mknod(join(root, 'run/initctl'), 'p')
  await writeFile(join(root, 'var/log/old.log'), 'an old log line\n')
  await utimes(join(root, 'var/log/old.log'), OLD_MTIME, OLD_MTIME)
  // Data: half in the root file system, half under /srv (another file system).
  const count = Math.max(2, Math.ceil(opts.dataBytes / DATA_FILE_BYTES))
  for (let i = 0; i < count; i++) {
    const dir = join(root, i % 2 === 0 ? 'usr/share/doc/e2e' : SRV_DIR)
    await writeFile(join(dir, `data-${String(i).padStart(3, '0')}.bin`), pseudoRandom(`e2e-${i}`, DATA_FILE_BYTES))
  }
  await lutimes(join(root, 'etc/README'), OLD_MTIME, OLD_MTIME)
}
