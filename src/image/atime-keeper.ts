// Listing a directory or reading a symlink moves its atime (relatime updates an atime
// older than the ctime, which every freshly extracted entry has), and Node can do
// neither with O_NOATIME. Whatever walks a tree to pack or check it notes those times
// before touching anything and puts back the ones that moved once it is done, as GNU
// tar's --atime-preserve=replace does: the tree is left as found (ctime aside), so
// packing is repeatable and checking can be run again.
import type { BigIntStats } from 'node:fs'
import { constants as fsc } from 'node:fs'
import { lstat, lutimes, open } from 'node:fs/promises'
import { TimeFixer, nodeTimes } from './times.ts'

interface Saved { atimeNs: bigint; mtimeNs: bigint; directory: boolean }

export class AtimeKeeper {
  private readonly saved = new Map<string, Saved>()

  /** Call with the lstat taken before listing the directory or reading the symlink. */
  note (abs: Buffer, st: BigIntStats): void {
    if (!st.isDirectory() && !st.isSymbolicLink()) return
    const key = abs.toString('latin1')
    if (!this.saved.has(key)) this.saved.set(key, { atimeNs: st.atimeNs, mtimeNs: st.mtimeNs, directory: st.isDirectory() })
  }

  /** The atime noted for `abs`, if any: what it was before we looked. */
  original (abs: Buffer): bigint | undefined {
    return this.saved.get(abs.toString('latin1'))?.atimeNs
  }

  async restore (): Promise<void> {
    const fixer = new TimeFixer()
    for (const [key, s] of this.saved) {
      const abs = Buffer.from(key, 'latin1')
      let now
      try {
        now = await lstat(abs, { bigint: true })
      } catch { continue } // gone meanwhile: nothing to put back
      // Changed in any other way meanwhile: not ours to put back.
      if (now.atimeNs === s.atimeNs || now.mtimeNs !== s.mtimeNs || now.isDirectory() !== s.directory) continue
      const t = nodeTimes(s)
      if (s.directory) {
        const fh = await open(abs, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW)
        try { await fh.utimes(t.atime, t.mtime) } finally { await fh.close() }
      } else {
        if (!now.isSymbolicLink()) continue
        await lutimes(abs, t.atime, t.mtime)
      }
      fixer.add(key, s)
    }
    this.saved.clear()
    await fixer.apply()
  }
}
