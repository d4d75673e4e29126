// Where the downloaded tarball waits: SystemImager's rule, RAM (tmpfs) when free memory
// exceeds the image plus a breathing room, else a directory on disk; an explicit
// setting wins.
//
// The staging file is named by the torrent's info hash, so that a run killed halfway
// (crash, kill -9, a re-run in the same boot) is followed by one that finds its verified
// pieces (the piece store keeps their bitfield next to the file). A lock file with the
// owner's pid says a live run is using it; another run of the same image at the same
// time (several agents on one machine, in tests and benchmarks) stages under a name of
// its own. Whatever a run that is gone left for another image is removed at the start:
// in RAM it would hold memory the next image needs.
import { freemem, tmpdir } from 'node:os'
import { mkdir, readdir, readFile, rm, stat, statfs, unlink, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import { isRunning } from '../formats/work-owner.ts'
import { RESUME_SUFFIX } from '../swarm/piece-store.ts'

export const RAM_HEADROOM_BYTES = 100 * 1024 * 1024
const TMPFS_MAGIC = 0x01021994
const RAMFS_MAGIC = 0x858458f6
const RAM_DIR_CANDIDATES = ['/dev/shm', '/run', tmpdir()]
/** The staging directory under the target when RAM is short. */
export const DISK_STAGING_DIR = '.si-staging'
const LOCK_SUFFIX = '.pid'
/** si-HASH.tar (resumable) or si-HASH16-PID-RANDOM.tar (a second run of the same image). */
const SHARED_NAME = /^si-([0-9a-f]{40})\.tar(?:\.pid|\.resume)?$/
const PRIVATE_NAME = /^si-[0-9a-f]{16}-(\d+)-[0-9a-f]+\.tar(?:\.resume)?$/

export interface StagingChoice { dir: string; kind: 'ram' | 'disk' | 'explicit'; reason: string }

export async function chooseStaging (opts: { size: number; explicit?: string; target: string; freeMemory?: number }): Promise<StagingChoice> {
  if (opts.explicit !== undefined) {
    await ensureDir(opts.explicit)
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
  const dir = join(opts.target, DISK_STAGING_DIR)
  await ensureDir(dir)
  return { dir, kind: 'disk', reason: `free RAM ${mib(free)} MiB is not enough for image ${mib(opts.size)} MiB + ${mib(RAM_HEADROOM_BYTES)} MiB` }
}

/** Staging paths this process is using now (its own pid in a lock says nothing about that). */
const inUse = new Set<string>()

export interface StagingFile {
  path: string
  /** A shared (resumable) name, locked by this run; a private one otherwise. */
  resumable: boolean
  /** Bytes the file already takes on disk (from an earlier run). */
  allocatedBytes: number
  /** Gives the name up; `keep` leaves file and resume data for the next run. */
  release (keep: boolean): Promise<void>
}

/** Whether the lock's owner is a live run (this process counts only while it uses the file). */
async function lockedByLiveRun (lock: string, file: string): Promise<boolean> {
  let pid: number
  try {
    pid = Number((await readFile(lock, 'utf8')).trim())
  } catch { return false }
  return pid === process.pid ? inUse.has(file) : isRunning(pid)
}

/**
 * Removes what runs that are gone left in the staging directories, except the files of
 * `infoHashHex` in `keepDir` (the one the caller resumes from).
 */
export async function removeDeadStaging (dirs: string[], infoHashHex: string, keepDir: string): Promise<string[]> {
  const removed: string[] = []
  for (const dir of new Set(dirs)) {
    let names: string[]
    try { names = await readdir(dir) } catch { continue }
    const hashes = new Set<string>()
    for (const name of names) {
      const shared = SHARED_NAME.exec(name)
      if (shared !== null) hashes.add(shared[1])
      const own = PRIVATE_NAME.exec(name)
      if (own !== null && !isRunning(Number(own[1]))) {
        await rm(join(dir, name), { force: true })
        removed.push(join(dir, name))
      }
    }
    for (const hash of hashes) {
      if (hash === infoHashHex && dir === keepDir) continue
      const file = join(dir, `si-${hash}.tar`)
      if (await lockedByLiveRun(file + LOCK_SUFFIX, file)) continue
      for (const suffix of [RESUME_SUFFIX, LOCK_SUFFIX, '']) await rm(file + suffix, { force: true })
      removed.push(file)
    }
  }
  return removed
}

/** The staging file for one run: the resumable name when no live run holds it. */
export async function claimStagingFile (dir: string, infoHashHex: string): Promise<StagingFile> {
  const shared = join(dir, `si-${infoHashHex}.tar`)
  const lock = shared + LOCK_SUFFIX
  if (!inUse.has(shared) && !await lockedByLiveRun(lock, shared)) {
    await unlink(lock).catch(() => {})
    try {
      // wx: of two runs that found the lock stale at once, one gets it.
      await writeFile(lock, `${process.pid}\n`, { flag: 'wx' })
      inUse.add(shared)
      const allocatedBytes = await stat(shared).then(s => s.blocks * 512, () => 0)
      return {
        path: shared,
        resumable: true,
        allocatedBytes,
        release: async keep => {
          inUse.delete(shared)
          if (!keep) for (const suffix of [RESUME_SUFFIX, '']) await rm(shared + suffix, { force: true })
          await rm(lock, { force: true })
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new SiError('ERR_STAGING', `cannot lock staging file ${shared}: ${(err as Error).message}`, { cause: err })
    }
  }
  const own = join(dir, `si-${infoHashHex.slice(0, 16)}-${process.pid}-${randomBytes(4).toString('hex')}.tar`)
  return {
    path: own,
    resumable: false,
    allocatedBytes: 0,
    release: async () => { for (const suffix of [RESUME_SUFFIX, '']) await rm(own + suffix, { force: true }) }
  }
}

/** Every directory a run may have staged in: RAM candidates, and the target's disk one. */
export function stagingDirs (target: string, explicit: string | undefined): string[] {
  return [...RAM_DIR_CANDIDATES, join(target, DISK_STAGING_DIR), ...(explicit !== undefined ? [explicit] : [])]
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

function mib (n: number): number { return Math.round(n / 1048576) }
