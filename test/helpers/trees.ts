// Deterministic source trees for deployment tests: incompressible content from a seeded
// generator, with the entry types an image carries.
import { mkdir, writeFile, symlink, link } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'

/** Pseudo-random bytes from a seed (SHA-256 in counter mode): the same every run. */
export function seededBytes (seed: string, size: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  for (let off = 0, counter = 0; off < size; counter++) {
    const block = createHash('sha256').update(`${seed}:${counter}`).digest()
    off += block.copy(out, off)
  }
  return out
}

/** A small root-like tree of about `megabytes` MB. */
export async function makeTree (root: string, megabytes: number, seed = 'tree'): Promise<void> {
  await mkdir(join(root, 'usr/lib'), { recursive: true })
  await mkdir(join(root, 'etc'), { recursive: true })
  await mkdir(join(root, 'var/empty'), { recursive: true })
  const files = Math.max(1, Math.round(megabytes / 2))
  for (let i = 0; i < files; i++) {
    await writeFile(join(root, 'usr/lib', `lib${i}.so`), seededBytes(`${seed}-${i}`, 2 * 1024 * 1024 - i * 977))
  }
  await writeFile(join(root, 'etc/hostname'), 'golden\n')
  await writeFile(join(root, 'etc/empty.conf'), '')
  await symlink('../usr/lib/lib0.so', join(root, 'etc/lib0-link'))
  await symlink('does-not-exist', join(root, 'etc/dangling'))
  await link(join(root, 'etc/hostname'), join(root, 'etc/hostname.hard'))
}
