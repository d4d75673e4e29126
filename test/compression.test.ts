// Compression per image: none, gzip and zstd, all from Node's zlib (no binary). Each
// round-trips a fixture tree exactly; the agent tells them apart by magic bytes; a
// corrupt, truncated or padded payload fails clearly; abandoning the iteration stops
// the reading; zstd decompression keeps well ahead of a gigabit link.
import { test } from 'node:test'
import { randomBytes } from 'node:crypto'
import assert from 'node:assert/strict'
import { createReadStream, type ReadStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSiError } from '../src/errors.ts'
import { compressToFile, decompressed, parseCompression, sniffCompression, type Compression } from '../src/image/compression.ts'
import { ImageRepository } from '../src/image/repository.ts'
import { diffSnapshots, formatDifference, snapshotArchive, snapshotTree } from '../src/image/verify.ts'
import { parseTorrent } from '../src/torrent/metainfo.ts'
import { extractTar } from '../src/deploy/extract.ts'
import { buildFixtureTree } from './fidelity-fixtures.ts'

const SKIP_UNLESS_ROOT = process.getuid?.() !== 0 && 'needs root'
/** A gigabit link carries about 120 MB/s: decompression must stay ahead of it. */
const GIGABIT_BYTES_PER_S = 120e6
const PAYLOAD_BYTES = 96 * 1024 * 1024
const SMALL_PAYLOAD_BYTES = 4 * 1024 * 1024

type After = { after(fn: () => Promise<void>): void; diagnostic(msg: string): void }

async function tempDir (t: After, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Text-like data of moderate redundancy, about what a root file system compresses to. */
function textLike (bytes: number): Buffer {
  const words = Array.from({ length: 4096 }, (_, i) => `word${(i * 2654435761) % 100003} `).join('')
  const raw = Buffer.alloc(bytes)
  for (let off = 0; off < raw.length; off += words.length) raw.write(words, off)
  return raw
}

async function compressed (c: Compression, data: Buffer, file: string): Promise<Buffer> {
  const out = compressToFile(c, file)
  out.input.end(data)
  await out.done
  return await readFile(file)
}

async function collect (input: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of decompressed(input)) chunks.push(chunk)
  return Buffer.concat(chunks)
}

async function * once (data: Buffer): AsyncGenerator<Buffer> { yield data }

test('compression names and magic bytes', () => {
  assert.equal(parseCompression('zstd'), 'zstd')
  assert.throws(() => parseCompression('xz'), /expected one of none, gzip, zstd/)
  assert.equal(sniffCompression(Buffer.from([0x1f, 0x8b, 0x08, 0])), 'gzip')
  assert.equal(sniffCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd')
  assert.equal(sniffCompression(Buffer.from('./\0\0')), 'none')
})

test('none, gzip and zstd images round-trip exactly through extractTar', { skip: SKIP_UNLESS_ROOT, timeout: 120_000 }, async t => {
  const work = await tempDir(t, 'si-comp-')
  const src = join(work, 'src')
  await mkdir(src)
  await buildFixtureTree(src)
  const repo = new ImageRepository(join(work, 'repo'))
  const sizes: Record<string, number> = {}
  for (const compression of ['none', 'gzip', 'zstd'] as const) {
    const v = await repo.add('fixture', { from: src, compression })
    assert.equal(v.compression, compression)
    assert.equal(sniffCompression((await readFile(v.tarPath)).subarray(0, 4)), compression)
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

test('a zstd payload of several frames decodes whole, whatever the chunking', async t => {
  const work = await tempDir(t, 'si-frames-')
  const first = textLike(SMALL_PAYLOAD_BYTES)
  const second = Buffer.from('a second frame, as `zstd` concatenation or an appended empty frame makes')
  const payload = Buffer.concat([await compressed('zstd', first, join(work, 'a.zst')), await compressed('zstd', second, join(work, 'b.zst'))])
  async function * byteByByteHead (): AsyncGenerator<Buffer> {
    for (let i = 0; i < 6; i++) yield payload.subarray(i, i + 1) // the magic bytes split over chunks
    yield payload.subarray(6)
  }
  assert.ok((await collect(byteByByteHead())).equals(Buffer.concat([first, second])))
})

test('a corrupt, truncated or padded payload fails with ERR_ARCHIVE saying what was wrong', async t => {
  const work = await tempDir(t, 'si-corrupt-')
  const raw = textLike(SMALL_PAYLOAD_BYTES)
  const zstd = await compressed('zstd', raw, join(work, 'p.zst'))
  const gzip = await compressed('gzip', raw, join(work, 'p.gz'))
  const flipped = Buffer.from(zstd)
  flipped[zstd.length >> 1] ^= 0xff
  const cases: Array<[string, Buffer, RegExp]> = [
    ['zstd garbage after the magic', Buffer.concat([zstd.subarray(0, 4), Buffer.alloc(600, 0x41)]), /^zstd payload is corrupt after \d+ compressed bytes: .+ \(ZSTD_error_\w+\)$/],
    ['zstd with a byte flipped', flipped, /^zstd payload is corrupt after \d+ compressed bytes: .+ \(ZSTD_error_\w+\)$/],
    ['zstd cut short', zstd.subarray(0, zstd.length - 100), /^zstd payload ends inside a frame \(truncated after \d+ compressed bytes\)$/],
    ['zstd with bytes after its frame', Buffer.concat([zstd, Buffer.from('not a frame')]), new RegExp(`^zstd payload has 11 bytes after its last frame \\(${zstd.length} compressed bytes decoded\\)$`)],
    ['gzip garbage after the magic', Buffer.concat([gzip.subarray(0, 4), Buffer.alloc(600, 0x41)]), /^gzip payload is corrupt after \d+ compressed bytes: /],
    ['gzip cut short', gzip.subarray(0, gzip.length - 100), /^gzip payload ends inside a member \(truncated after \d+ compressed bytes\)$/]
  ]
  for (const [what, bad, message] of cases) {
    await assert.rejects(collect(once(bad)), (err: unknown) => isSiError(err, 'ERR_ARCHIVE') && message.test(err.message), what)
  }
  // The extractor reports the same, on the agent's path.
  const dst = await tempDir(t, 'si-corrupt-dst-')
  await assert.rejects(extractTar(once(flipped), dst), (err: unknown) => isSiError(err, 'ERR_ARCHIVE') && /zstd payload is corrupt/.test(err.message))
})

test('abandoning the iteration stops the decompressor and closes the input', async t => {
  const work = await tempDir(t, 'si-abandon-')
  const file = join(work, 'payload.zst')
  // Incompressible, so the file is many input chunks long.
  const size = (await compressed('zstd', randomBytes(SMALL_PAYLOAD_BYTES), file)).length
  const input: ReadStream = createReadStream(file, { highWaterMark: 64 * 1024 })
  let decoded = 0
  for await (const chunk of decompressed(input)) {
    decoded += chunk.length
    break
  }
  assert.ok(decoded > 0 && decoded < SMALL_PAYLOAD_BYTES)
  assert.ok(input.destroyed, 'the input is destroyed')
  assert.ok(input.bytesRead < size / 2, `read ${input.bytesRead} of ${size} bytes: stopped early`)
})

test(`zstd decompression runs faster than a gigabit link (${GIGABIT_BYTES_PER_S / 1e6} MB/s)`, { timeout: 120_000 }, async t => {
  const work = await tempDir(t, 'si-speed-')
  const file = join(work, 'payload.zst')
  await compressed('zstd', textLike(PAYLOAD_BYTES), file)
  const started = process.hrtime.bigint()
  let bytes = 0
  for await (const chunk of decompressed(createReadStream(file))) bytes += chunk.length
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  assert.equal(bytes, PAYLOAD_BYTES)
  const rate = bytes / seconds
  t.diagnostic(`zstd decompression through decompressed(): ${(rate / 1e6).toFixed(0)} MB/s`)
  assert.ok(rate > GIGABIT_BYTES_PER_S, `${(rate / 1e6).toFixed(0)} MB/s`)
})
