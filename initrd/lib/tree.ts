// The tool bundle as a directory tree, for `si-server image add` to pack: the same
// entries as an initramfs part, with parent directories added, every time set to one
// fixed moment, so the same contents give the same tarball and the same info hash.
import { lutimes, mkdir, rename, rm, symlink, writeFile, chmod } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { SiError } from '../../src/errors.ts'
import { archivePath, type Entry } from './newc.ts'

const DIR_MODE = 0o755

/** Writes `entries` under `dir` (replacing whatever was there) with every mtime and atime `mtime`. */
export async function writeTree (dir: string, entries: Entry[], mtime: number): Promise<void> {
  const work = `${dir}.tmp${process.pid}`
  await rm(work, { recursive: true, force: true })
  await mkdir(work, { mode: DIR_MODE })
  const dirs = new Set<string>([''])
  const ensureParents = async (path: string): Promise<void> => {
    const parts = path.split('/')
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/')
      if (dirs.has(d)) continue
      dirs.add(d)
      await mkdir(join(work, d), { mode: DIR_MODE })
    }
  }
  const written: string[] = []
  try {
    for (const entry of entries) {
      const path = archivePath(entry.path)
      await ensureParents(path)
      const where = join(work, path)
      if (entry.type === 'dir') {
        if (!dirs.has(path)) { dirs.add(path); await mkdir(where, { mode: entry.mode & 0o7777 }) }
        await chmod(where, entry.mode & 0o7777)
        continue
      }
      if (entry.type === 'file') {
        await writeFile(where, entry.data, { mode: entry.mode & 0o7777, flag: 'wx' })
        await chmod(where, entry.mode & 0o7777) // past the umask
      } else if (entry.type === 'symlink') await symlink(entry.target, where)
      else throw new SiError('ERR_INITRD', `${path}: device nodes belong in the initramfs, not in the tool bundle`)
      written.push(path)
    }
    // Directories last and deepest first: filling a directory moves its times.
    for (const path of written) await lutimes(join(work, path), mtime, mtime)
    for (const d of [...dirs].sort((a, b) => b.length - a.length)) await lutimes(join(work, d), mtime, mtime)
    await mkdir(dirname(dir), { recursive: true })
    await rm(dir, { recursive: true, force: true })
    await rename(work, dir)
  } catch (err) {
    await rm(work, { recursive: true, force: true })
    throw err
  }
}
