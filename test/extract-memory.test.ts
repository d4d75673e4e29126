// What the extraction worker keeps does not grow with the entry count. Exact times that
// Node cannot set wait for a batched run of the time fixer; they are applied once a bound
// is reached, even when every batch ends inside a file (large files, where 1 MiB batches
// are cut by their content): before, they waited for a batch that ended between files,
// and on /usr 40 000 of them (most of the worker's heap) waited to the end.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import * as tar from 'tar-stream'
import { extractTar } from '../src/deploy/extract.ts'
import { BATCH_BYTES } from '../src/deploy/extract-feed.ts'

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
