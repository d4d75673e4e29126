import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { isSiError } from '../src/errors.ts'
import { packDirectory } from '../src/image/pack.ts'
import { ImageRepository } from '../src/image/repository.ts'
import { readTar } from '../src/image/tar-reader.ts'
import { createTorrent } from '../src/torrent/metainfo.ts'
import { PayloadHashes } from '../src/image/pack-payload.ts'

const MIB = 1024 * 1024

type After = { after(fn: () => Promise<void>): void }

async function tempDir (t: After, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** SHA-1 of each `length` piece of `data`, one after the other. */
function piecesOf (data: Buffer, length: number): Buffer {
  const out: Buffer[] = []
  for (let at = 0; at < data.length; at += length) out.push(createHash('sha1').update(data.subarray(at, at + length)).digest())
  return Buffer.concat(out)
}

test('payload hashes follow the piece length as the size grows, and match a whole-file hash', async t => {
  const dir = await tempDir(t, 'si-pack-hash-')
  const data = randomBytes(9 * MIB + 12345)
  const file = join(dir, 'payload')
  await writeFile(file, data)
  // pieceLengthFor's shape, scaled down: 1 MiB up to 3 MiB, 2 MiB up to 7 MiB, then 4 MiB.
  const lengthFor = (size: number): number => size <= 3 * MIB ? MIB : size <= 7 * MIB ? 2 * MIB : 4 * MIB
  for (const chosen of [undefined, 16 * 1024]) {
    const hashes = new PayloadHashes(chosen, lengthFor)
    // Chunks that straddle piece boundaries and the rule's steps in every way.
    for (let at = 0, step = 1; at < data.length; at += step, step = (step * 7 + 4093) % (3 * MIB)) hashes.update(data.subarray(at, at + step))
    const length = chosen ?? 4 * MIB
    assert.deepEqual(await hashes.finish(file), { pieceLength: length, pieces: piecesOf(data, length) }, `chosen ${chosen}`)
  }
})

test('a version\'s torrent, hashed while its payload was written, is the torrent of the stored payload', async t => {
  const src = await tempDir(t, 'si-pack-src-')
  await mkdir(join(src, 'etc'))
  await writeFile(join(src, 'etc/hostname'), 'node\n')
  // Several batches of the worker, and pieces of every candidate length.
  await writeFile(join(src, 'big.bin'), randomBytes(5 * MIB + 777))
  await symlink('etc/hostname', join(src, 'link'))
  const repo = new ImageRepository(await tempDir(t, 'si-pack-repo-'))
  for (const compression of ['none', 'zstd', 'gzip'] as const) {
    for (const pieceLength of [undefined, 16 * 1024]) {
      const v = await repo.add(`img-${compression}`, { from: src, compression, pieceLength })
      const expected = await createTorrent({
        file: v.tarPath,
        name: `img-${compression}-${v.version}.tar${compression === 'none' ? '' : compression === 'zstd' ? '.zst' : '.gz'}`,
        pieceLength,
        unpacked: { bytes: v.unpackedBytes!, entries: v.entries }
      })
      assert.deepEqual(await readFile(v.torrentPath), expected, `${compression}, piece length ${pieceLength ?? 'automatic'}`)
    }
  }
})

test('a bad piece length is refused before anything is packed', async t => {
  const src = await tempDir(t, 'si-pack-src-')
  const repo = new ImageRepository(await tempDir(t, 'si-pack-repo-'))
  await assert.rejects(repo.add('img', { from: src, pieceLength: 3000 }), (err: unknown) => isSiError(err, 'ERR_INVALID_ARGUMENT') && /piece length 3000/.test(err.message))
  assert.deepEqual(await repo.list(), [])
})

test('a tree larger than the worker\'s batches in flight packs whole and in order', async t => {
  const src = await tempDir(t, 'si-pack-src-')
  const files = new Map<string, Buffer>()
  for (let i = 0; i < 40; i++) files.set(`f${String(i).padStart(2, '0')}`, randomBytes(i * 37_000))
  for (const [name, data] of files) await writeFile(join(src, name), data)
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  const result = await packDirectory(src, out)
  const seen = new Map<string, Buffer>()
  for await (const { entry, body } of readTar(Readable.from([Buffer.concat(chunks)]))) {
    const parts: Buffer[] = []
    for await (const { data } of body()) parts.push(Buffer.from(data))
    if (entry.type === 'file') seen.set(entry.path.toString(), Buffer.concat(parts))
  }
  assert.equal(result.entries, files.size + 1)
  assert.deepEqual([...seen.keys()], [...files.keys()])
  for (const [name, data] of files) assert.ok(seen.get(name)!.equals(data), name)
})
