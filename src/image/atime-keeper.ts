// Listing a directory or reading a symlink moves its atime (relatime updates an atime
// older than the ctime, which every freshly extracted entry has), and Node can do
// neither with O_NOATIME. Whatever walks a tree to pack or check it notes those times
// before touching anything and puts back the ones that moved once it is done, as GNU
// tar's --atime-preserve=replace does: the tree is left as found (ctime aside), so
// packing is repeatable and checking can be run again.
import type { BigIntStats } from 'node:fs'
import { closeSync, constants as fsc, futimesSync, lstatSync, lutimesSync, openSync } from 'node:fs'
import { lstat, lutimes, open } from 'node:fs/promises'
import { TimeFixer, nodeTimes } from './times.ts'

interface Saved { atimeNs: bigint; mtimeNs: bigint; directory: boolean }

const DIRECTORY_FLAGS = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW

/** Whether `now` shows only the atime moved since `s` (anything else changed is not ours to undo). */
function onlyAtimeMoved (s: Saved, now: BigIntStats): boolean {
  return now.atimeNs !== s.atimeNs && now.mtimeNs === s.mtimeNs && now.isDirectory() === s.directory && (s.directory || now.isSymbolicLink())
}

/** Puts the noted times back on `abs` if only its atime moved; true if it did. */
async function putBack (abs: Buffer, s: Saved): Promise<boolean> {
  let now
  try {
    now = await lstat(abs, { bigint: true })
  } catch { return false } // gone meanwhile: nothing to put back
  if (!onlyAtimeMoved(s, now)) return false
  const t = nodeTimes(s)
  if (s.directory) {
    const fh = await open(abs, DIRECTORY_FLAGS)
    try { await fh.utimes(t.atime, t.mtime) } finally { await fh.close() }
  } else {
    await lutimes(abs, t.atime, t.mtime)
  }
  return true
}

/** putBack with synchronous calls: for a worker whose thread does nothing else meanwhile. */
function putBackSync (abs: Buffer, s: Saved): boolean {
  const now = lstatSync(abs, { bigint: true, throwIfNoEntry: false })
  if (now === undefined || !onlyAtimeMoved(s, now)) return false
  const t = nodeTimes(s)
  if (s.directory) {
    const fd = openSync(abs, DIRECTORY_FLAGS)
    try { futimesSync(fd, t.atime, t.mtime) } finally { closeSync(fd) }
  } else {
    lutimesSync(abs, t.atime, t.mtime)
  }
  return true
}

export class AtimeKeeper {
  private readonly saved = new Map<string, Saved>()

  /** Call with the lstat taken before listing the directory or reading the symlink. */
  note (abs: Buffer, st: BigIntStats): void {
    if (!st.isDirectory() && !st.isSymbolicLink()) return
    const key = abs.toString('latin1')
    if (!this.saved.has(key)) this.saved.set(key, { atimeNs: st.atimeNs, mtimeNs: st.mtimeNs, directory: st.isDirectory() })
  }

  /**
   * Puts back the atimes that moved. `blocking`: with synchronous calls, a thread-pool
   * round trip fewer per path, for a worker thread that has nothing else to do.
   */
  async restore (opts: { blocking?: boolean } = {}): Promise<void> {
    const fixer = new TimeFixer()
    for (const [key, s] of this.saved) {
      const abs = Buffer.from(key, 'latin1')
      if (opts.blocking === true ? putBackSync(abs, s) : await putBack(abs, s)) fixer.add(key, s)
    }
    this.saved.clear()
    await fixer.apply()
  }
}
