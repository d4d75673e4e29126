// /etc/fstab for the installed system: every file system the layout made, by UUID
// (device names change between boots and controllers; UUIDs do not). Entries of the
// image's own fstab that are not disks (proc, tmpfs, NFS) are kept.
import type { Formatted } from './filesystems.ts'
import { mountOrder } from './filesystems.ts'

const HEADER = '# /etc/fstab: written by swarmimager at install time.\n# <file system> <mount point> <type> <options> <dump> <pass>\n'
const DEFAULT_OPTIONS: Record<string, string> = { ext4: 'defaults', xfs: 'defaults', vfat: 'umask=0077', swap: 'sw' }
/** Sources that name a disk: the layout replaces these lines. */
const DISK_SOURCE = /^(UUID=|PARTUUID=|LABEL=|PARTLABEL=|\/dev\/)/

function passFor (p: Formatted): number {
  if (p.spec.mount === '/') return 1
  // fsck.xfs does nothing at boot; ext4 and vfat are checked after the root.
  return p.spec.fs === 'xfs' ? 0 : 2
}

/** Non-disk lines of an existing fstab (comments and blank lines dropped). */
export function keptLines (existing: string): string[] {
  return existing.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#') && !DISK_SOURCE.test(l))
}

export function renderFstab (parts: Formatted[], existing = ''): string {
  const rows: string[][] = []
  for (const p of mountOrder(parts)) {
    rows.push([`UUID=${p.uuid}`, p.spec.mount as string, p.spec.fs, p.spec.mountOptions ?? DEFAULT_OPTIONS[p.spec.fs] ?? 'defaults', '0', String(passFor(p))])
  }
  for (const p of parts.filter(x => x.spec.fs === 'swap')) rows.push([`UUID=${p.uuid}`, 'none', 'swap', p.spec.mountOptions ?? 'sw', '0', '0'])
  const lines = rows.map(r => r.join('\t'))
  return HEADER + [...lines, ...keptLines(existing)].join('\n') + '\n'
}
