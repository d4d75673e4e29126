import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import type { BigIntStats } from 'node:fs'
import { lstat, lutimes, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { isSiError } from '../src/errors.ts'
import { packDirectory } from '../src/image/pack.ts'
import { ImageRepository } from '../src/image/repository.ts'
import { readTar } from '../src/image/tar-reader.ts'
import type { TarEntry } from '../src/image/tar-format.ts'
import { createTorrent } from '../src/torrent/metainfo.ts'
import { PayloadHashes, writePayload } from '../src/image/pack-payload.ts'

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

/** Every path under `dir` (relative, raw bytes as latin1) with its lstat. */
async function statTree (dir: string): Promise<Map<string, BigIntStats>> {
  const out = new Map<string, BigIntStats>()
  const visit = async (rel: Buffer): Promise<void> => {
    const abs = rel.length === 0 ? Buffer.from(dir) : Buffer.concat([Buffer.from(dir + '/'), rel])
    const st = await lstat(abs, { bigint: true })
    out.set(rel.toString('latin1'), st)
    if (!st.isDirectory()) return
    for (const name of await readdir(abs, { encoding: 'buffer' })) await visit(rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]))
  }
  await visit(Buffer.alloc(0))
  return out
}

async function packToEntries (src: string): Promise<Map<string, TarEntry>> {
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  await packDirectory(src, out)
  const entries = new Map<string, TarEntry>()
  for await (const { entry, body } of readTar(Readable.from([Buffer.concat(chunks)]))) {
    for await (const _ of body()) { /* skip the data */ }
    entries.set(entry.path.toString('latin1'), entry)
  }
  return entries
}

test('packing leaves every atime as found and records the ones it found, directories and symlinks included', async t => {
  const src = await tempDir(t, 'si-pack-atime-')
  for (const d of ['a', 'a/b', 'a/b/c', 'z']) await mkdir(join(src, d))
  await writeFile(join(src, 'a/b/c/file'), 'data')
  await symlink('a/b/c/file', join(src, 'link'))
  await symlink('x'.repeat(100), join(src, 'a/long-link'))
  // Old atimes, older than the ctimes: listing or reading would move every one of them.
  const old = new Date('2001-02-03T04:05:06.789Z')
  const setOld = async (): Promise<void> => {
    for (const p of ['', 'a', 'a/b', 'a/b/c', 'z', 'a/b/c/file']) await utimes(join(src, p), old, old)
    for (const p of ['link', 'a/long-link']) await lutimes(join(src, p), old, old)
  }
  await setOld()
  const before = await statTree(src)
  await setOld() // statTree listed the directories
  const entries = await packToEntries(src)
  const after = await statTree(src)
  assert.equal(entries.size, before.size)
  for (const [rel, st] of before) {
    assert.equal(after.get(rel)?.atimeNs, st.atimeNs, `atime of "${rel}" left as found`)
    assert.equal(entries.get(rel)?.atimeNs ?? entries.get(rel)?.mtimeNs, st.atimeNs, `atime of "${rel}" recorded as found`)
  }
})

test('xattrs of a tree larger than one getfattr batch land on their own entries, whatever the names', { skip: spawnSync('setfattr', ['--version']).status !== 0 && 'needs setfattr' }, async t => {
  const src = await tempDir(t, 'si-pack-xattrs-')
  // More paths and more bytes of names than one batch holds (4096 paths, 60 KiB).
  const names: Buffer[] = []
  for (let i = 0; i < 5000; i++) names.push(Buffer.from(`file-${String(i).padStart(5, '0')}-${'n'.repeat(20)}`))
  names.push(Buffer.from('-starts-with-a-dash'), Buffer.from('new\nline'), Buffer.from([0x6e, 0x6f, 0x74, 0xff, 0xfe]))
  await mkdir(join(src, 'dir'))
  for (const n of names) await writeFile(Buffer.concat([Buffer.from(src + '/dir/'), n]), '')
  const tagged = [names[0], names[4500], names[4999], ...names.slice(5000)]
  for (const [i, n] of tagged.entries()) {
    const r = spawnSync('setfattr', ['-h', '-n', 'user.tag', '-v', `0x${(i + 1).toString(16).padStart(2, '0')}`, Buffer.concat([Buffer.from('dir/'), n]).toString('latin1')], { cwd: src, encoding: 'latin1' })
    if (r.status !== 0) {
      // Names that are not UTF-8 cannot go through argv as strings: tag them through xargs.
      const x = spawnSync('xargs', ['-0', 'setfattr', '-h', '-n', 'user.tag', '-v', `0x${(i + 1).toString(16).padStart(2, '0')}`, '--'], { cwd: src, input: Buffer.concat([Buffer.from('dir/'), n, Buffer.from([0])]) })
      assert.equal(x.status, 0, x.stderr.toString())
    }
  }
  spawnSync('setfattr', ['-n', 'user.root', '-v', '0x72', '.'], { cwd: src })
  const entries = await packToEntries(src)
  assert.equal(entries.get('')?.xattrs?.get('user.root')?.toString(), 'r')
  const withTag = [...entries].filter(([, e]) => e.xattrs?.has('user.tag') === true).map(([rel, e]) => [rel, e.xattrs!.get('user.tag')!.toString('hex')])
  assert.deepEqual(withTag, tagged.map((n, i) => [Buffer.concat([Buffer.from('dir/'), n]).toString('latin1'), (i + 1).toString(16).padStart(2, '0')]).sort((a, b) => Buffer.compare(Buffer.from(a[0], 'latin1'), Buffer.from(b[0], 'latin1'))))
})

test('a payload written in chunks, the last through end(chunk), hashes every byte once', async t => {
  const dir = await tempDir(t, 'si-payload-')
  const data = randomBytes(3 * MIB + 12345)
  const hashes = new PayloadHashes(MIB)
  const out = writePayload(join(dir, 'p.tar'), 'none', hashes)
  out.input.write(data.subarray(0, MIB))
  out.input.write(data.subarray(MIB, 2 * MIB + 7))
  out.input.end(data.subarray(2 * MIB + 7))
  assert.equal(await out.done, data.length)
  assert.deepEqual(await readFile(join(dir, 'p.tar')), data)
  assert.deepEqual((await hashes.finish(join(dir, 'p.tar'))).pieces, piecesOf(data, MIB))
})
