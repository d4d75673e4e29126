// Room before work: the staging area must hold the payload and the target the extracted
// image, checked before a byte is fetched, so a node that cannot finish says so at once
// instead of after the whole download. Needs on the same file system add up (staging
// under the target, when RAM is short, shares the target's disk).
import { readdir, stat, statfs } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import type { Metainfo } from '../torrent/metainfo.ts'
import { INCOMPLETE_MARKER } from './extract.ts'
import { DISK_STAGING_DIR } from './staging.ts'

/** ramfs reports no free space at all: it grows until RAM runs out (checked elsewhere). */
const RAMFS_MAGIC = 0x858458f6
const MIB = 1024 * 1024

export interface SpaceNeed {
  /** What needs it, for the message: "staging", "target". */
  what: string
  dir: string
  bytes: number
  /** Inodes (entries to create); checked only where the file system counts them. */
  inodes?: number
}

export interface FreeSpace { bytes: number; inodes: number | undefined; unbounded: boolean }

export async function freeSpace (dir: string): Promise<FreeSpace> {
  const s = await statfs(dir)
  return {
    bytes: s.bavail * s.bsize,
    // Btrfs and others allocate inodes on demand and report 0 of them.
    inodes: s.files > 0 ? s.ffree : undefined,
    unbounded: s.type === RAMFS_MAGIC
  }
}

function mib (n: number): string {
  return `${Math.ceil(n / MIB)} MiB`
}

/** ERR_NO_SPACE naming every shortfall: what is needed, where, and what is free. */
export async function checkSpace (needs: SpaceNeed[]): Promise<void> {
  const byDevice = new Map<number, { dir: string; needs: SpaceNeed[] }>()
  for (const need of needs) {
    let dev: number
    try {
      dev = (await stat(need.dir)).dev
    } catch (err) {
      throw new SiError('ERR_INVALID_ARGUMENT', `${need.what} ${need.dir} cannot be examined: ${(err as Error).message}`, { cause: err })
    }
    const group = byDevice.get(dev) ?? { dir: need.dir, needs: [] }
    group.needs.push(need)
    byDevice.set(dev, group)
  }
  const problems: string[] = []
  for (const { dir, needs: group } of byDevice.values()) {
    const free = await freeSpace(dir)
    if (free.unbounded) continue
    const bytes = group.reduce((sum, n) => sum + n.bytes, 0)
    const inodes = group.reduce((sum, n) => sum + (n.inodes ?? 0), 0)
    const what = group.map(n => `${n.what} ${n.dir} needs ${mib(n.bytes)}${n.inodes !== undefined ? ` and ${n.inodes} inodes` : ''}`).join(', ')
    if (bytes > free.bytes) problems.push(`${what}; the file system has ${mib(free.bytes)} free`)
    else if (free.inodes !== undefined && inodes > free.inodes) problems.push(`${what}; the file system has ${free.inodes} inodes free`)
  }
  if (problems.length > 0) throw new SiError('ERR_NO_SPACE', `not enough space: ${problems.join('; ')}`)
}

/** Names in a target that say nothing about its content: a fresh file system's, and ours. */
const FRESH_TARGET_NAMES = new Set(['lost+found', DISK_STAGING_DIR, INCOMPLETE_MARKER])

/**
 * The extracted image's share of the target, when the torrent says how big it is and the
 * target is fresh: over an existing tree (or for an override) what is there gets
 * replaced, and the free space says little.
 */
export async function targetNeed (meta: Metainfo, target: string, overlay: boolean): Promise<SpaceNeed | undefined> {
  if (meta.unpacked === undefined || overlay) return undefined
  const names = await readdir(target)
  if (!names.every(n => FRESH_TARGET_NAMES.has(n))) return undefined
  return { what: 'target', dir: target, bytes: meta.unpacked.bytes, inodes: meta.unpacked.entries }
}
