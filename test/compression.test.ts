// Compression per image: none, gzip (zlib), zstd (the zstd binary). Each round-trips a
// fixture tree exactly; the agent tells them apart by magic bytes; a corrupt payload
// fails clearly; zstd decompression keeps well ahead of a gigabit link.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSiError } from '../src/errors.ts'
import { decompressed, parseCompression, sniffCompression } from '../src/image/compression.ts'
import { ImageRepository } from '../src/image/repository.ts'
import { diffSnapshots, formatDifference, snapshotArchive, snapshotTree } from '../src/image/verify.ts'
import { parseTorrent } from '../src/torrent/metainfo.ts'
import { extractTar } from '../src/deploy/extract.ts'
import { buildFixtureTree, hasTool } from './fidelity-fixtures.ts'
import { readFile } from 'node:fs/promises'

const IS_ROOT = process.getuid?.() === 0
const SKIP = (!IS_ROOT && 'needs root') || (!hasTool('zstd') && 'zstd is not installed')
/** A gigabit link carries about 120 MB/s: decompression must stay ahead of it. */
const GIGABIT_BYTES_PER_S = 120e6
const PAYLOAD_BYTES = 96 * 1024 * 1024

type After = { after(fn: () => Promise<void>): void; diagnostic(msg: string): void }

async function tempDir (t: After, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

test('compression names and magic bytes', () => {
  assert.equal(parseCompression('zstd'), 'zstd')
  assert.throws(() => parseCompression('xz'), /expected one of none, gzip, zstd/)
  assert.equal(sniffCompression(Buffer.from([0x1f, 0x8b, 0x08, 0])), 'gzip')
  assert.equal(sniffCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd')
  assert.equal(sniffCompression(Buffer.from('./\0\0')), 'none')
})

test('none, gzip and zstd images round-trip exactly through extractTar', { skip: SKIP, timeout: 120_000 }, async t => {
  const work = await tempDir(t, 'si-comp-')
  const src = join(work, 'src')
  await mkdir(src)
  await buildFixtureTree(src)
  const repo = new ImageRepository(join(work, 'repo'))
  const sizes: Record<string, number> = {}
  for (const compression of ['none', 'gzip', 'zstd'] as const) {
    const v = await repo.add('fixture', { from: src, compression })
    assert.equal(v.compression, compression)
    sizes[compression] = v.size
    const meta = parseTorrent(await readFile(v.torrentPath))
    assert.equal(meta.name, `fixture-${v.version}.tar${compression === 'gzip' ? '.gz' : compression === 'zstd' ? '.zst' : ''}`)
    const dst = join(work, compression)
    await mkdir(dst)
    await extractTar(createReadStream(v.tarPath), dst)
    const diffs = diffSnapshots(await snapshotArchive(createReadStream(v.tarPath)), await snapshotTree(dst))
    assert.deepEqual(diffs.map(formatDifference), [], compression)
  }
  t.diagnostic(`fixture sizes: ${JSON.stringify(sizes)}`)
  assert.ok(sizes.gzip < sizes.none && sizes.zstd < sizes.none)
})

test('a corrupt zstd or gzip payload fails with ERR_ARCHIVE', { skip: SKIP }, async t => {
  const dst = await tempDir(t, 'si-corrupt-')
  for (const bad of [Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(600, 0x41)]), Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0]), Buffer.alloc(600, 0x41)])]) {
    await assert.rejects(extractTar((async function * () { yield bad })(), dst), (err: unknown) => isSiError(err, 'ERR_ARCHIVE'))
  }
})

test(`zstd decompression runs faster than a gigabit link (${GIGABIT_BYTES_PER_S / 1e6} MB/s)`, { skip: SKIP, timeout: 120_000 }, async t => {
  const work = await tempDir(t, 'si-speed-')
  // Text-like data of moderate redundancy, about what a root file system compresses to.
  const words = Array.from({ length: 4096 }, (_, i) => `word${(i * 2654435761) % 100003} `).join('')
  const raw = Buffer.alloc(PAYLOAD_BYTES)
  for (let off = 0; off < raw.length; off += words.length) raw.write(words, off)
  const file = join(work, 'payload.zst')
  const r = spawnSync('zstd', ['-q', '-3', '-T0', '-o', file], { input: raw })
  assert.equal(r.status, 0, r.stderr?.toString())
  const started = process.hrtime.bigint()
  let bytes = 0
  for await (const chunk of decompressed(createReadStream(file))) bytes += chunk.length
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  assert.equal(bytes, PAYLOAD_BYTES)
  const rate = bytes / seconds
  t.diagnostic(`zstd decompression through decompressed(): ${(rate / 1e6).toFixed(0)} MB/s`)
  assert.ok(rate > GIGABIT_BYTES_PER_S, `${(rate / 1e6).toFixed(0)} MB/s`)
})
