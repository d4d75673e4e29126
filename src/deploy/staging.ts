// Where the downloaded tarball waits: SystemImager's rule, RAM (tmpfs) when free memory
// exceeds the image plus a breathing room, else a directory on disk; an explicit
// setting wins.
import { freemem, tmpdir } from 'node:os'
import { mkdir, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../errors.ts'

export const RAM_HEADROOM_BYTES = 100 * 1024 * 1024
const TMPFS_MAGIC = 0x01021994
const RAMFS_MAGIC = 0x858458f6
const RAM_DIR_CANDIDATES = ['/dev/shm', '/run', tmpdir()]

export interface StagingChoice { dir: string; kind: 'ram' | 'disk' | 'explicit'; reason: string }

export async function chooseStaging (opts: { size: number; explicit?: string; target: string; freeMemory?: number }): Promise<StagingChoice> {
  if (opts.explicit !== undefined) {
    await ensureDir(opts.explicit)
    await ensureRoom(opts.explicit, opts.size)
    return { dir: opts.explicit, kind: 'explicit', reason: 'set by --staging' }
  }
  const free = opts.freeMemory ?? freemem()
  if (free > opts.size + RAM_HEADROOM_BYTES) {
    for (const dir of RAM_DIR_CANDIDATES) {
      if (await isRamBacked(dir) && await hasRoom(dir, opts.size)) {
        return { dir, kind: 'ram', reason: `free RAM ${mib(free)} MiB > image ${mib(opts.size)} MiB + ${mib(RAM_HEADROOM_BYTES)} MiB` }
      }
    }
  }
  const dir = join(opts.target, '.si-staging')
  await ensureDir(dir)
  await ensureRoom(dir, opts.size)
  return { dir, kind: 'disk', reason: `free RAM ${mib(free)} MiB is not enough for image ${mib(opts.size)} MiB + ${mib(RAM_HEADROOM_BYTES)} MiB` }
}

async function isRamBacked (dir: string): Promise<boolean> {
  try {
    const s = await statfs(dir)
    return s.type === TMPFS_MAGIC || s.type === RAMFS_MAGIC
  } catch { return false }
}

async function hasRoom (dir: string, size: number): Promise<boolean> {
  try {
    const s = await statfs(dir)
    // ramfs reports no free space at all: it grows until RAM runs out, which the caller checked.
    return s.type === RAMFS_MAGIC || s.bavail * s.bsize >= size
  } catch { return false }
}

async function ensureDir (dir: string): Promise<void> {
  try { await mkdir(dir, { recursive: true }) } catch (err) {
    throw new SiError('ERR_STAGING', `cannot create staging directory ${dir}: ${(err as Error).message}`, { cause: err })
  }
}

async function ensureRoom (dir: string, size: number): Promise<void> {
  if (!await hasRoom(dir, size)) throw new SiError('ERR_STAGING', `staging directory ${dir} has less than ${mib(size)} MiB free`)
}

function mib (n: number): number { return Math.round(n / 1048576) }
