// The benchmark's image: a tree of incompressible files shaped like a small system
// (directories, many small files, some large ones, symlinks), packed by si-server.
import { randomBytes, randomInt } from 'node:crypto'
import { mkdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../../src/errors.ts'
import { run } from './exec.ts'

export const IMAGE_NAME = 'bench'
const SMALL_FILES = 200
const SMALL_FILE_MAX = 8 * 1024
const LARGE_FILE_MIN = 64 * 1024
const LARGE_FILE_MAX = 4 * 1024 * 1024
const DIRS = ['bin', 'lib', 'usr/lib', 'usr/share/doc', 'etc', 'var/lib']
const PACK_TIMEOUT_MS = 10 * 60_000

export interface BenchImage {
  ref: string
  size: number
  tarPath: string
  treeDir: string
  /** the torrent's file name (what BitTorrent clients save the payload as) */
  payloadName: string
  pieceLength: number
  entries: number
}

async function makeTree (dir: string, bytes: number): Promise<void> {
  for (const d of DIRS) await mkdir(join(dir, d), { recursive: true })
  let left = bytes
  const small = Math.min(SMALL_FILES, Math.max(1, Math.floor(bytes / (64 * 1024))))
  for (let i = 0; i < small; i++) {
    const size = randomInt(1, SMALL_FILE_MAX)
    await writeFile(join(dir, 'etc', `conf-${i}`), randomBytes(size))
    left -= size
  }
  for (let i = 0; left > 0; i++) {
    const size = Math.min(left, randomInt(LARGE_FILE_MIN, LARGE_FILE_MAX))
    await writeFile(join(dir, DIRS[i % DIRS.length], `blob-${i}.so`), randomBytes(size))
    left -= size
  }
  await symlink('blob-0.so', join(dir, 'bin', 'link-to-blob'))
  await symlink('/usr/lib', join(dir, 'lib64'))
}

/** Makes a tree of about `bytes` bytes in treeDir and adds it to the repository. */
export async function makeImage (serverBin: string, repo: string, treeDir: string, bytes: number, pieceLength?: number): Promise<BenchImage> {
  await makeTree(treeDir, bytes)
  return await addImage(serverBin, repo, treeDir, pieceLength)
}

/** Packs an existing tree (the same bytes) into another repository, e.g. with another piece length. */
export async function addImage (serverBin: string, repo: string, treeDir: string, pieceLength?: number): Promise<BenchImage> {
  // The bench's files are random: compression would only cost CPU, and the transports
  // compared (rsync, udpcast, aria2c) must carry the same plain tarball.
  const extra = ['--compression', 'none', ...(pieceLength === undefined ? [] : ['--piece-length', String(pieceLength)])]
  const ref = (await run(serverBin, ['image', 'add', IMAGE_NAME, '--from', treeDir, '--repo', repo, ...extra], { timeoutMs: PACK_TIMEOUT_MS })).trim()
  const list = JSON.parse(await run(serverBin, ['image', 'list', '--repo', repo, '--json'])) as Array<{ name: string; version: number; tarPath: string; size: number; pieceLength: number; entries: number }>
  const v = list.find(x => `${x.name}@${x.version}` === ref)
  if (v === undefined) throw new SiError('ERR_BENCH', `si-server image add printed ${JSON.stringify(ref)}, which image list does not show`)
  return { ref, size: v.size, tarPath: v.tarPath, treeDir, payloadName: `${v.name}-${v.version}.tar`, pieceLength: v.pieceLength, entries: v.entries }
}
