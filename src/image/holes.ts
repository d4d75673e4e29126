// Where a sparse file's data lies. Node has no lseek, so no SEEK_DATA/SEEK_HOLE; reading
// a 9 GiB file of holes costs about as much as reading 9 GiB (the kernel fills page cache
// with zeros). GNU tar asks the kernel (SEEK_DATA) and writes the answer as a sparse map
// before the data: we run it on the open file, read its map with our tar reader and stop
// it there. Without GNU tar, aligned all-zero blocks are taken as holes.
import { spawn } from 'node:child_process'
import { read } from 'node:fs'
import { promisify } from 'node:util'
import { SiError } from '../errors.ts'
import { readTar } from './tar-reader.ts'

export type Segments = Array<[number, number]>

const READ_CHUNK_BYTES = 1024 * 1024
/** Holes found by scanning are whole pages, so extracted holes are real holes. */
const HOLE_BLOCK = 4096
const ZERO_BLOCK = Buffer.alloc(HOLE_BLOCK)
const TAR_TIMEOUT_MS = 60_000
const readAt = promisify(read)

/** GNU tar's map ends with [size, 0] after a trailing hole; ours does the same. */
function endAtSize (segments: Segments, size: number): Segments {
  const last = segments[segments.length - 1]
  if (last === undefined || last[0] + last[1] < size) segments.push([size, 0])
  return segments
}

async function mapFromGnuTar (fd: number, size: number): Promise<Segments | undefined> {
  const child = spawn('tar', ['--sparse', '--format=posix', '--atime-preserve=system', '--dereference', '-cf', '-', '/proc/self/fd/3'], {
    stdio: ['ignore', 'pipe', 'ignore', fd],
    timeout: TAR_TIMEOUT_MS
  })
  const spawned = new Promise<boolean>(resolve => {
    child.once('spawn', () => resolve(true))
    child.once('error', () => resolve(false))
  })
  if (!await spawned) return undefined
  try {
    for await (const { entry } of readTar(child.stdout!)) {
      if (entry.type !== 'file' || entry.size !== size) return undefined // changed meanwhile: let the caller scan
      return endAtSize(entry.sparse ?? [[0, size]], size)
    }
    return undefined
  } catch {
    return undefined
  } finally {
    child.stdout!.destroy()
    child.kill()
  }
}

async function mapByScanning (fd: number, size: number, rel: string): Promise<Segments> {
  const segments: Segments = []
  const buf = Buffer.allocUnsafe(READ_CHUNK_BYTES)
  let start = -1
  for (let pos = 0; pos < size;) {
    const want = Math.min(READ_CHUNK_BYTES, size - pos)
    const { bytesRead: n } = await readAt(fd, buf, 0, want, pos)
    if (n === 0) throw new SiError('ERR_SOURCE_CHANGED', `${rel} shrank while being read`)
    for (let i = 0; i < n; i += HOLE_BLOCK) {
      const block = buf.subarray(i, Math.min(i + HOLE_BLOCK, n))
      const zero = block.length === HOLE_BLOCK && block.equals(ZERO_BLOCK)
      if (!zero && start < 0) start = pos + i
      if (zero && start >= 0) { segments.push([start, pos + i - start]); start = -1 }
    }
    pos += n
  }
  if (start >= 0) segments.push([start, size - start])
  return endAtSize(segments, size)
}

/** Data segments [offset, length] of the file open as `fd`, of `size` bytes. */
export async function findDataSegments (fd: number, size: number, rel: string): Promise<Segments> {
  return await mapFromGnuTar(fd, size) ?? await mapByScanning(fd, size, rel)
}

/** Whether a map leaves at least one whole aligned page unallocated. */
export function segmentsHaveHole (segments: Segments, size: number): boolean {
  let pos = 0
  for (const [offset, length] of [...segments, [size, 0] as [number, number]]) {
    const holeStart = Math.ceil(pos / HOLE_BLOCK) * HOLE_BLOCK
    if (Math.floor(offset / HOLE_BLOCK) * HOLE_BLOCK - holeStart >= HOLE_BLOCK) return true
    pos = Math.max(pos, offset + length)
  }
  return false
}
