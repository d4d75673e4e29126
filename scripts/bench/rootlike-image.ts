// The benchmark's root-like image: a tree of rootlike-tree.ts (thousands of small files,
// directories, symbolic links, hard links, set-uid files), scaled down for the emulated
// links and packed by si-server, so that T counts extracting many files, not only
// moving bytes.
//
// Scaled by its entry count, and without its large libraries: rootlike-tree.ts always adds
// ten of them, 162 MiB whatever the entry count. At the plan's 10 Mbit/s links a tree of
// 4 000 entries with them would be an image of 205 MB (T* 164 s per trial, 80 % of it the
// same few large files as the one-file image); without them it is 42.5 MB (T* 34 s), 3 270
// files, 77 per MB (the full 64 000-entry tree has 68 per MB, a Debian root about 50): the
// many-small-files side of a root file system at the rate the links carry.
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { addImage, type BenchImage } from './image.ts'
import { run } from './exec.ts'
import { ensureRootlikeTree } from './rootlike-tree.ts'
import { summarise, type TreeSummary } from './tree-check.ts'

export const DEFAULT_ROOTLIKE_ENTRIES = 4_000
/** Where generated trees are kept between runs (the same cache as install-time.ts's). */
export const ROOTLIKE_CACHE_DIR = '/var/cache/swarmimager-bench'
/** Files this large or larger are left out: only rootlike-tree.ts's large libraries are (its small files stop at 8 MiB, and 4 MiB and more is 1 in 50 000 of them). */
export const LARGE_FILE_BYTES = 4 * 1024 * 1024
/** Copying a tree of many small files may take a while on a busy disk. */
const COPY_TIMEOUT_MS = 10 * 60_000

export interface RootlikeImage { image: BenchImage; tree: TreeSummary; entries: number }

/**
 * Generates (or reuses) the tree of `entries` entries under cacheDir, copies it into
 * workDir without its large files, and packs the copy into repo.
 */
export async function makeRootlikeImage (opts: { serverBin: string; repo: string; workDir: string; entries: number; cacheDir: string; pieceLength?: number }): Promise<RootlikeImage> {
  const source = ensureRootlikeTree(join(opts.cacheDir, `rootlike-${opts.entries}`), { entries: opts.entries })
  const treeDir = join(opts.workDir, 'rootlike-tree')
  await rm(treeDir, { recursive: true, force: true })
  // cp -a keeps hard links, modes and times; a hard link to a large file has its size and goes with it.
  await run('cp', ['-a', '--', `${source.dir}/.`, treeDir], { timeoutMs: COPY_TIMEOUT_MS })
  await run('find', [treeDir, '-type', 'f', '-size', `+${LARGE_FILE_BYTES - 1}c`, '-delete'], { timeoutMs: COPY_TIMEOUT_MS })
  const image = await addImage(opts.serverBin, opts.repo, treeDir, opts.pieceLength)
  return { image, tree: await summarise(treeDir), entries: image.entries }
}
