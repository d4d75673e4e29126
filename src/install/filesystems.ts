// Formatting and mounting. The agent chooses every file system's UUID itself and hands
// it to mkfs, so fstab can name file systems by UUID without asking blkid afterwards.
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import { runCommand } from './command.ts'
import type { PlacedPartition } from './disk-layout.ts'
import type { Filesystem } from '../formats/plan.ts'

/** mkfs of a large disk can take minutes (xfs discards, ext4 inode tables). */
export const MKFS_TIMEOUT_MS = 30 * 60_000
/** vfat refuses chmod/chown on files unless mounted with "quiet"; the image's modes for
 * the ESP are not representable anyway, so the install mount does not fail on them. */
const INSTALL_MOUNT_OPTIONS: Partial<Record<Filesystem, string>> = { vfat: 'quiet' }

export interface Formatted extends PlacedPartition {
  /** as fstab's UUID= wants it: a UUID, or XXXX-XXXX for vfat */
  uuid: string
}

/** A UUID as each tool takes it and as blkid will later report it. */
export function newFsUuid (fs: Filesystem): { uuid: string; arg: string } {
  if (fs === 'vfat') {
    const id = randomBytes(4).toString('hex').toUpperCase()
    return { uuid: `${id.slice(0, 4)}-${id.slice(4)}`, arg: id }
  }
  const uuid = randomUUID()
  return { uuid, arg: uuid }
}

export function mkfsCommand (p: PlacedPartition, uuidArg: string): [string, string[]] | undefined {
  const label = p.spec.label
  const extra = p.spec.mkfsOptions
  switch (p.spec.fs) {
    case 'ext4': return ['mkfs.ext4', ['-F', '-q', '-U', uuidArg, ...(label ? ['-L', label] : []), ...extra, p.device]]
    case 'xfs': return ['mkfs.xfs', ['-f', '-q', '-m', `uuid=${uuidArg}`, ...(label ? ['-L', label] : []), ...extra, p.device]]
    case 'vfat': return ['mkfs.vfat', ['-i', uuidArg, ...(label ? ['-n', label.toUpperCase()] : []), ...extra, p.device]]
    case 'swap': return ['mkswap', ['-U', uuidArg, ...(label ? ['-L', label] : []), ...extra, p.device]]
    case 'none': return undefined
  }
}

export async function format (p: PlacedPartition, signal?: AbortSignal): Promise<Formatted> {
  const { uuid, arg } = newFsUuid(p.spec.fs)
  const cmd = mkfsCommand(p, arg)
  if (cmd !== undefined) await runCommand(cmd[0], cmd[1], { signal, timeoutMs: MKFS_TIMEOUT_MS })
  return { ...p, uuid }
}

/** Mount order: a parent before what is mounted inside it. */
export function mountOrder<T extends { spec: { mount?: string } }> (parts: T[]): T[] {
  return parts.filter(p => p.spec.mount !== undefined).sort((a, b) => depth(a.spec.mount as string) - depth(b.spec.mount as string) || (a.spec.mount as string).localeCompare(b.spec.mount as string))
}

function depth (mount: string): number { return mount === '/' ? 0 : mount.split('/').length - 1 }

/** Mounts every file system under `root`; returns the mount points, first mounted first. */
export async function mountAll (parts: Formatted[], root: string, signal?: AbortSignal): Promise<string[]> {
  const mounted: string[] = []
  try {
    for (const p of mountOrder(parts)) {
      const where = join(root, p.spec.mount as string)
      await mkdir(where, { recursive: true })
      const options = [INSTALL_MOUNT_OPTIONS[p.spec.fs], p.spec.mountOptions].filter(o => o !== undefined).join(',')
      await runCommand('mount', ['-t', p.spec.fs, ...(options !== '' ? ['-o', options] : []), p.device, where], { signal })
      mounted.push(where)
    }
    return mounted
  } catch (err) {
    await unmountAll(mounted)
    throw err
  }
}

/** Unmounts in reverse order; reports (does not throw) what would not let go. */
export async function unmountAll (mounted: string[]): Promise<string[]> {
  const stuck: string[] = []
  for (const where of [...mounted].reverse()) {
    try {
      await runCommand('umount', [where])
    } catch (err) {
      stuck.push(`${where}: ${err instanceof SiError ? err.message : String(err)}`)
    }
  }
  return stuck
}
