// What the extraction worker keeps does not grow with the entry count. Exact times that
// Node cannot set wait for a batched run of the time fixer; they are applied once a bound
// is reached, even when every batch ends inside a file (large files, where 1 MiB batches
// are cut by their content): before, they waited for a batch that ended between files,
// and on /usr 40 000 of them (most of the worker's heap) waited to the end.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import * as tar from 'tar-stream'
import { extractTar } from '../src/deploy/extract.ts'
import { BATCH_BYTES } from '../src/deploy/extract-feed.ts'
import { PieceStore } from '../src/swarm/piece-store.ts'

/** Files larger than a batch's share, so that batches end inside them. */
const FILE_BYTES = 48 * 1024 + 512
const FILES = 400
/** A bound far below the entry count, so that a bound not kept shows. */
const BOUND = 32
/** Times no double lands on: they all wait for the time fixer. */
const MTIME = '1700000000.123456789'
const ATIME = '1700000001.987654321'

test('400 large files with nanosecond times, every batch ending inside a file: at most the bound plus one batch of exact times wait, and every time is exact', async t => {
  const dst = await mkdtemp(join(tmpdir(), 'si-extract-memory-'))
  t.after(() => rm(dst, { recursive: true, force: true }))
  const pack = tar.pack()
  const content = randomBytes(FILE_BYTES)
  for (let i = 0; i < FILES; i++) {
    pack.entry({ name: `f${i}`, size: FILE_BYTES, mode: 0o644, pax: { mtime: MTIME, atime: ATIME } } as tar.Header, content)
  }
  pack.finalize()

  const result = await extractTar(pack as unknown as Readable, dst, { timeFixesPerRun: BOUND })

  assert.equal(result.entries, FILES)
  const filesPerBatch = Math.ceil(BATCH_BYTES / FILE_BYTES) + 1
  assert.ok(result.mostTimesWaiting >= BOUND, `the bound was reached (${result.mostTimesWaiting})`)
  assert.ok(result.mostTimesWaiting <= BOUND + filesPerBatch, `${result.mostTimesWaiting} exact times waited at most; bound ${BOUND} + ${filesPerBatch}`)
  for (const i of [0, FILES / 2, FILES - 1]) {
    const st = await stat(join(dst, `f${i}`), { bigint: true })
    assert.equal(st.mtimeNs, 1_700_000_000_123_456_789n, `f${i} mtime`)
    assert.equal(st.atimeNs, 1_700_000_001_987_654_321n, `f${i} atime`)
  }
})

test('an uncompressed image read through the piece store, each chunk given back (and overwritten) once extraction is done with it: every file intact, a handful of chunk buffers for many chunks', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'si-extract-pooled-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const chunkBytes = 16 * 1024
  // Sizes that put headers and file ends across chunk boundaries.
  const sizes = Array.from({ length: 120 }, (_, i) => (i * 7919) % (3 * chunkBytes) + (i % 3))
  const contents = sizes.map((size, i) => randomBytes(size).fill(i, 0, Math.min(size, 1)))
  const pack = tar.pack()
  contents.forEach((content, i) => pack.entry({ name: `d/f${i}`, size: content.length, mode: 0o644 }, content))
  pack.finalize()
  const parts: Buffer[] = []
  for await (const part of pack as unknown as AsyncIterable<Buffer>) parts.push(part)
  const archive = Buffer.concat(parts)
  const pieceLength = 64 * 1024
  const pieceCount = Math.ceil(archive.length / pieceLength)
  const layout = {
    length: archive.length,
    pieceLength,
    pieceCount,
    pieceHashes: Array.from({ length: pieceCount }, (_, i) => createHash('sha1').update(archive.subarray(i * pieceLength, (i + 1) * pieceLength)).digest())
  }
  const file = join(dir, 'image.tar')
  await writeFile(file, archive)
  await mkdir(join(dir, 'target'))
  const store = await PieceStore.openComplete(file, layout, { inOrderChunkBytes: chunkBytes, inOrderAheadBytes: 2 * chunkBytes, readCacheBytes: pieceLength })
  try {
    // Overwritten the moment it is given back: a chunk released while a view of it was still to be copied shows as a damaged file.
    const release = (chunk: Buffer): void => { chunk.fill(0xee); store.releaseChunk(chunk) }
    const result = await extractTar(store.readInOrder(), join(dir, 'target'), { release })
    assert.equal(result.entries, contents.length)
    for (const [i, content] of contents.entries()) {
      assert.ok((await readFile(join(dir, 'target', 'd', `f${i}`))).equals(content), `d/f${i} intact`)
    }
    const chunks = Math.ceil(archive.length / chunkBytes)
    assert.ok(store.chunksMade <= 6, `${store.chunksMade} chunk buffers for ${chunks} chunks`)
  } finally {
    await store.close()
  }
})
