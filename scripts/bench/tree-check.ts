// A cheap identity check of an installed tree against the image's source tree: the same
// paths with the same types and sizes. (Our agent verifies every piece; rsync and tar
// do not tell us as much, so every transport gets this same check.)
import { lstat, readdir } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'

export interface TreeSummary { entries: number; bytes: number; digest: string }

export async function summarise (root: string): Promise<TreeSummary> {
  const lines: string[] = []
  let bytes = 0
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort()
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`
      const st = await lstat(join(root, path))
      const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFile() ? 'f' : 'o'
      if (kind === 'f') bytes += st.size
      lines.push(`${kind} ${path} ${kind === 'f' ? st.size : 0}`)
      if (kind === 'd') await walk(path)
    }
  }
  await walk('')
  return { entries: lines.length, bytes, digest: createHash('sha1').update(lines.join('\n')).digest('hex') }
}
