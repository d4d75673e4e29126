import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { appendFileSync, createReadStream, truncateSync } from 'node:fs'
import { chmod, link, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { isSiError, type SiErrorCode } from '../src/errors.ts'
import { packDirectory } from '../src/image/pack.ts'
import { walkTree, type TarSink } from '../src/image/pack-walk.ts'
import { ImageRepository, PAYLOAD_FILES } from '../src/image/repository.ts'
import { ImageServer } from '../src/server/image-server.ts'
import { parseImageRef } from '../src/formats/image-ref.ts'
import { compareTrees } from '../src/image/verify.ts'
import { extractTar } from '../src/deploy/extract.ts'
import { decodeBencode } from '../src/torrent/bencode.ts'
import { parseTorrent } from '../src/torrent/metainfo.ts'

type After = { after(fn: () => Promise<void>): void }

async function tempDir (t: After, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function smallTree (t: After, marker = 'v1'): Promise<string> {
  const dir = await tempDir(t, 'si-tree-')
  await mkdir(join(dir, 'etc'))
  await writeFile(join(dir, 'etc/hostname'), `node-${marker}\n`)
  await writeFile(join(dir, 'data.bin'), randomBytes(100_000))
  await symlink('etc/hostname', join(dir, 'hostname-link'))
  return dir
}

function isCode (code: SiErrorCode, message?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(isSiError(err, code), `expected ${code}, got ${String(err)}`)
    if (message !== undefined) assert.match(err.message, message)
    return true
  }
}

async function tarBytes (src: string): Promise<Buffer> {
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', c => chunks.push(c))
  await packDirectory(src, out)
  return Buffer.concat(chunks)
}

test('parseImageRef accepts NAME and NAME@N and nothing else', () => {
  assert.deepEqual(parseImageRef('centos'), { name: 'centos' })
  assert.deepEqual(parseImageRef('rocky-9.3_x86'), { name: 'rocky-9.3_x86' })
  assert.deepEqual(parseImageRef('centos@12'), { name: 'centos', version: 12 })
  assert.deepEqual(parseImageRef('a'.repeat(64)), { name: 'a'.repeat(64) })
  for (const bad of ['', '-x', '.hidden', 'a/b', '..', 'a b', 'a'.repeat(65), 'x@0', 'x@', 'x@01', 'x@1.5', 'x@-1', 'x@1@2', '@3']) {
    assert.throws(() => parseImageRef(bad), isCode('ERR_INVALID_IMAGE_NAME'), bad)
  }
})

test('repository add numbers versions, lists, resolves and removes them', async t => {
  const root = await tempDir(t, 'si-repo-')
  const repo = new ImageRepository(root)
  const v1src = await smallTree(t, 'v1')
  const v2src = await smallTree(t, 'v2')
  const phases = new Set<string>()

  const v1 = await repo.add('centos', { from: v1src, pieceLength: 16384, onProgress: phase => phases.add(phase) })
  assert.deepEqual([...phases].sort(), ['hash', 'pack'])
  assert.equal(v1.version, 1)
  assert.equal(v1.dir, join(root, 'images', 'centos', '1'))
  assert.equal(v1.pieceLength, 16384)
  assert.equal(v1.source, v1src)
  assert.equal(v1.entries, 5)
  assert.equal(v1.compression, 'zstd', 'the default')
  assert.deepEqual((await readdir(v1.dir)).sort(), ['image.tar.zst', 'image.torrent', 'meta.json'])
  const meta = parseTorrent(await repo.readTorrent(v1))
  assert.equal(meta.infoHashHex, v1.infoHashHex)
  assert.equal(meta.length, v1.size)
  assert.equal(meta.name, 'centos-1.tar.zst')
  assert.deepEqual(meta.announce, [], 'the server adds its own tracker when serving')
  assert.equal((decodeBencode(meta.raw) as Record<string, unknown>).announce, undefined)

  const v2 = await repo.add('centos', { from: v2src })
  const other = await repo.add('alpine', { from: v1src })
  assert.equal(v2.version, 2)
  assert.equal(other.version, 1)
  assert.notEqual(v2.infoHashHex, v1.infoHashHex)

  assert.deepEqual((await repo.list()).map(v => `${v.name}@${v.version}`), ['alpine@1', 'centos@1', 'centos@2'])
  assert.deepEqual(await repo.resolve('centos'), v2)
  assert.deepEqual(await repo.resolve('centos@1'), v1)
  await assert.rejects(repo.resolve('centos@7'), isCode('ERR_IMAGE_NOT_FOUND', /"centos@7".*available versions of centos: 1, 2/))
  await assert.rejects(repo.resolve('fedora'), isCode('ERR_IMAGE_NOT_FOUND', /"fedora" not found$/))

  // The stored tarball is the source tree, attribute for attribute.
  const out = await tempDir(t, 'si-out-')
  await extractTar(createReadStream(v2.tarPath), out)
  assert.deepEqual(await compareTrees(v2src, out, { ignore: ['atime'] }), [])

  // A second repository object over the same root sees the same thing.
  assert.equal((await new ImageRepository(root).list()).length, 3)

  assert.deepEqual(await repo.remove('centos@2'), [v2])
  assert.deepEqual((await repo.list()).map(v => `${v.name}@${v.version}`), ['alpine@1', 'centos@1'])
  const v3 = await repo.add('centos', { from: v2src })
  assert.equal(v3.version, 3, 'a removed number is not given to different content')
  assert.deepEqual((await repo.remove('centos')).map(v => v.version), [1, 3])
  await assert.rejects(repo.resolve('centos'), isCode('ERR_IMAGE_NOT_FOUND'))
  await assert.rejects(repo.remove('centos'), isCode('ERR_IMAGE_NOT_FOUND'))
  assert.deepEqual(await readdir(join(root, 'images')), ['alpine'])
})

test('repository add refuses bad sources and names, and leaves nothing behind on failure', async t => {
  const root = await tempDir(t, 'si-repo-')
  const repo = new ImageRepository(root)
  const src = await smallTree(t)
  await assert.rejects(repo.add('x', { from: join(src, 'missing') }), isCode('ERR_SOURCE_NOT_FOUND'))
  await assert.rejects(repo.add('x', { from: join(src, 'data.bin') }), isCode('ERR_SOURCE_NOT_FOUND'))
  await assert.rejects(repo.add('bad/name', { from: src }), isCode('ERR_INVALID_IMAGE_NAME'))
  await assert.rejects(repo.add('x@3', { from: src }), isCode('ERR_INVALID_IMAGE_NAME'))

  const ac = new AbortController()
  ac.abort()
  await assert.rejects(repo.add('x', { from: src, signal: ac.signal }), isCode('ERR_ABORTED'))
  const ac2 = new AbortController()
  await assert.rejects(repo.add('x', { from: src, signal: ac2.signal, onProgress: phase => { if (phase === 'hash') ac2.abort() } }), isCode('ERR_ABORTED'))
  assert.deepEqual(await repo.list(), [])
  assert.deepEqual(await readdir(join(root, 'images', 'x')), [], 'no half-made version is left')
})

test('concurrent adds of one image get distinct versions', async t => {
  const repo = new ImageRepository(await tempDir(t, 'si-repo-'))
  const src = await smallTree(t)
  const made = await Promise.all([repo.add('x', { from: src }), repo.add('x', { from: src }), repo.add('x', { from: src })])
  assert.deepEqual(made.map(v => v.version).sort(), [1, 2, 3])
  assert.deepEqual((await repo.list()).map(v => v.version), [1, 2, 3])
})

test('packing is deterministic and reports what it skipped', async t => {
  const src = await smallTree(t)
  await mkdir(join(src, 'b-dir'))
  await writeFile(join(src, 'b-dir', 'z'), 'z')
  await writeFile(join(src, 'B'), 'upper case sorts first in byte order')
  const sock = join(src, 'control.sock')
  const server = createServer()
  await new Promise<void>(resolve => server.listen(sock, resolve))
  t.after(() => new Promise<void>(resolve => server.close(() => resolve())))

  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', c => chunks.push(c))
  const progress: number[] = []
  const result = await packDirectory(src, out, { onProgress: bytes => progress.push(bytes) })
  assert.deepEqual(result.skipped, ['control.sock'])
  assert.equal(result.bytes, Buffer.concat(chunks).length)
  assert.equal(progress[progress.length - 1], result.bytes)
  assert.equal(result.entries, 8) // ., B, b-dir, b-dir/z, data.bin, etc, etc/hostname, hostname-link
  assert.deepEqual(await tarBytes(src), Buffer.concat(chunks))
})

test('packing fails clearly on a missing source and a file changing size, and leaves no partial file', async t => {
  const src = await tempDir(t, 'si-src-')
  await assert.rejects(packDirectory(join(src, 'nope'), new PassThrough()), isCode('ERR_SOURCE_NOT_FOUND'))

  const other = await tempDir(t, 'si-other-')
  await writeFile(join(other, 'data'), randomBytes(4 * 1024 * 1024))
  const outFile = join(src, 'partial.tar')
  const ac = new AbortController()
  await assert.rejects(packDirectory(other, outFile, { signal: ac.signal, onProgress: () => ac.abort() }), isCode('ERR_ABORTED'))
  assert.deepEqual(await readdir(src), [], 'a failed pack to a path leaves no partial file')

  const big = join(src, 'big')
  await writeFile(big, randomBytes(8 * 1024 * 1024))
  // The walk itself, with a sink that changes the file once 1 MiB of the archive is out:
  // through the worker, when that happens depends on how far ahead it reads.
  await assert.rejects(walkTree(src, sinkAfter(1024 * 1024, () => truncateSync(big, 1000))), isCode('ERR_SOURCE_CHANGED', /big shrank/))
  await writeFile(big, randomBytes(8 * 1024 * 1024))
  await assert.rejects(walkTree(src, sinkAfter(1024 * 1024, () => appendFileSync(big, 'more'))), isCode('ERR_SOURCE_CHANGED', /big grew/))
})

/** A sink that keeps nothing and calls `change` once `bytes` bytes went into it. */
function sinkAfter (bytes: number, change: () => void): TarSink {
  const batch = Buffer.alloc(64 * 1024)
  let total = 0
  let changed = false
  const commit = (n: number): void => {
    total += n
    if (!changed && total > bytes) { changed = true; change() }
  }
  return { write: b => commit(b.length), room: () => batch, commit }
}

test('packing honours an abort signal midway', async t => {
  const src = await tempDir(t, 'si-src-')
  await writeFile(join(src, 'big'), randomBytes(4 * 1024 * 1024))
  const ac = new AbortController()
  await assert.rejects(packDirectory(src, new PassThrough().resume(), { signal: ac.signal, onProgress: () => ac.abort() }), isCode('ERR_ABORTED'))
})

test('compareTrees reports each kind of difference', async t => {
  const a = await tempDir(t, 'si-a-')
  const b = await tempDir(t, 'si-b-')
  const when = new Date('2010-01-01T00:00:00Z')
  for (const dir of [a, b]) {
    await writeFile(join(dir, 'content'), 'same')
    await writeFile(join(dir, 'mode'), 'm')
    await writeFile(join(dir, 'time'), 't')
    await writeFile(join(dir, 'h1'), 'h')
    await symlink('target-a', join(dir, 'link'))
    await mkdir(join(dir, 'kind'))
    await utimes(join(dir, 'time'), when, when)
  }
  // Made a moment apart: only their times differ yet.
  assert.deepEqual((await compareTrees(a, b, { ignore: ['mtime', 'atime'] })).filter(d => d.path !== '.'), [])

  await writeFile(join(b, 'content'), 'diff')
  await chmod(join(b, 'mode'), 0o4711)
  await utimes(join(b, 'time'), when, new Date(when.getTime() + 5000))
  await link(join(a, 'h1'), join(a, 'h2'))
  await writeFile(join(b, 'h2'), 'h')
  await unlink(join(b, 'link'))
  await symlink('target-b', join(b, 'link'))
  await rm(join(b, 'kind'), { recursive: true })
  await writeFile(join(b, 'kind'), '')
  await writeFile(join(b, 'extra'), '')
  await utimes(a, when, when)
  await utimes(b, when, when)

  const found = (await compareTrees(a, b)).map(d => `${d.path} ${d.attribute}`)
  assert.ok(found.includes('content content'), found.join('\n'))
  assert.ok(found.includes('mode mode'))
  assert.ok(found.includes('time mtime'))
  assert.ok(found.includes('h1 hardlinks'))
  assert.ok(found.includes('h2 hardlinks'))
  assert.ok(found.includes('link target'))
  assert.ok(found.includes('kind type'))
  assert.ok(found.includes('extra presence'))
  const mode = (await compareTrees(a, b)).find(d => d.path === 'mode')
  assert.deepEqual(mode, { path: 'mode', attribute: 'mode', expected: '0644', actual: '4711' })
  assert.ok((await readFile(join(a, 'content'), 'utf8')) === 'same')
})

/** An image server over `root` (HTTP only: no seeder), stopped after the test. */
async function httpServer (t: After, root: string): Promise<string> {
  const server = new ImageServer({ repoDir: root, host: '127.0.0.1', port: 0, peerPort: 0, seed: false })
  await server.start()
  t.after(() => server.stop())
  return `http://127.0.0.1:${server.httpPort}`
}

async function getBytes (url: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string | null; body: Buffer }> {
  const res = await fetch(url, { headers })
  return { status: res.status, type: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) }
}

/** What the server says about a version: its torrent's name and web seed, its payload under each name. */
async function served (base: string, ref: string, names: string[]): Promise<{ torrentName: string; infoHash: string; webSeed: string[]; listed: unknown; payloads: Record<string, { status: number; type: string | null; body: Buffer }> }> {
  const path = `/images/${ref.replace('@', '/')}`
  const torrent = parseTorrent((await getBytes(`${base}${path}/image.torrent`)).body)
  const list = JSON.parse((await getBytes(`${base}/api/images`)).body.toString()) as Array<{ name: string; version: number; payload: string; compression: string }>
  const payloads: Record<string, { status: number; type: string | null; body: Buffer }> = {}
  for (const n of names) payloads[n] = await getBytes(`${base}${path}/${n}`)
  return { torrentName: torrent.name, infoHash: torrent.infoHashHex, webSeed: torrent.urlList, listed: list.find(v => `${v.name}@${v.version}` === ref), payloads }
}

test('compressed payloads are stored and served under names that say so; the web seed follows', async t => {
  const root = await tempDir(t, 'si-repo-')
  const repo = new ImageRepository(root)
  const src = await smallTree(t)
  const made = { none: await repo.add('x', { from: src, compression: 'none' }), gzip: await repo.add('x', { from: src, compression: 'gzip' }), zstd: await repo.add('x', { from: src, compression: 'zstd' }) }
  const base = await httpServer(t, root)
  for (const [compression, file, suffix, type] of [['none', 'image.tar', '', 'application/x-tar'], ['gzip', 'image.tar.gz', '.gz', 'application/gzip'], ['zstd', 'image.tar.zst', '.zst', 'application/zstd']] as const) {
    const v = made[compression]
    assert.equal(v.payloadName, file)
    assert.equal(v.tarPath, join(v.dir, file))
    assert.deepEqual((await readdir(v.dir)).sort(), [file, 'image.torrent', 'meta.json'].sort())
    const ref = `x@${v.version}`
    const s = await served(base, ref, PAYLOAD_FILES as string[])
    assert.equal(s.torrentName, `x-${v.version}.tar${suffix}`)
    assert.equal(s.infoHash, v.infoHashHex)
    assert.deepEqual(s.webSeed, [`${base}/images/x/${v.version}/${file}`])
    assert.deepEqual(s.listed, { name: 'x', version: v.version, size: v.size, infoHash: v.infoHashHex, pieceLength: v.pieceLength, createdAt: v.createdAt, entries: v.entries, compression, torrent: `/images/x/${v.version}/image.torrent`, payload: `/images/x/${v.version}/${file}` })
    const stored = await readFile(v.tarPath)
    assert.equal(s.payloads[file].status, 200, file)
    assert.equal(s.payloads[file].type, type)
    assert.ok(s.payloads[file].body.equals(stored), `${ref} ${file}: the stored bytes`)
    assert.ok(s.payloads['image.tar'].body.equals(stored), `${ref}: image.tar still answers, for old clients`)
    for (const other of PAYLOAD_FILES.filter(n => n !== file && n !== 'image.tar')) {
      assert.equal(s.payloads[other].status, 404, `${ref} ${other}`)
      assert.match(s.payloads[other].body.toString(), new RegExp(`compressed as ${compression}: its payload is ${file.replaceAll('.', '\\.')}`))
    }
    const out = await tempDir(t, 'si-out-')
    await extractTar(createReadStream(v.tarPath), out)
    assert.deepEqual(await compareTrees(src, out, { ignore: ['atime'] }), [], ref)
  }
  const ranged = await getBytes(`${base}/images/x/${made.zstd.version}/image.tar.zst`, { range: 'bytes=4-9' })
  assert.equal(ranged.status, 206)
  assert.ok(ranged.body.equals((await readFile(made.zstd.tarPath)).subarray(4, 10)))
})

test('a repository laid out the old way (compressed payloads named image.tar) is still read and served', async t => {
  const root = await tempDir(t, 'si-repo-')
  const src = await smallTree(t)
  const made = await new ImageRepository(root).add('old', { from: src, compression: 'zstd' })
  // What versions made before payloads were named by compression look like on disk.
  await rename(made.tarPath, join(made.dir, 'image.tar'))
  const { payloadFile, ...oldMeta } = JSON.parse(await readFile(join(made.dir, 'meta.json'), 'utf8')) as Record<string, unknown>
  assert.equal(payloadFile, 'image.tar.zst')
  await writeFile(join(made.dir, 'meta.json'), JSON.stringify(oldMeta, null, 2) + '\n')
  assert.deepEqual((await readdir(made.dir)).sort(), ['image.tar', 'image.torrent', 'meta.json'])

  const repo = new ImageRepository(root)
  const v = await repo.resolve('old@1')
  assert.equal(v.compression, 'zstd')
  assert.equal(v.tarPath, join(v.dir, 'image.tar'))
  assert.equal(v.payloadName, 'image.tar.zst')
  assert.equal(v.infoHashHex, made.infoHashHex, 'an existing version keeps its info hash')
  const out = await tempDir(t, 'si-out-')
  await extractTar(createReadStream(v.tarPath), out)
  assert.deepEqual(await compareTrees(src, out, { ignore: ['atime'] }), [])

  const base = await httpServer(t, root)
  const s = await served(base, 'old@1', ['image.tar', 'image.tar.zst', 'image.tar.gz'])
  assert.equal(s.torrentName, 'old-1.tar.zst')
  assert.equal(s.infoHash, made.infoHashHex)
  assert.deepEqual(s.webSeed, [`${base}/images/old/1/image.tar.zst`])
  const stored = await readFile(v.tarPath)
  assert.ok(s.payloads['image.tar.zst'].body.equals(stored))
  assert.ok(s.payloads['image.tar'].body.equals(stored))
  assert.equal(s.payloads['image.tar.gz'].status, 404)

  // A version whose meta.json names a payload that its compression does not is not offered.
  await writeFile(join(v.dir, 'meta.json'), JSON.stringify({ ...oldMeta, payloadFile: '../../etc/passwd' }))
  assert.deepEqual(await repo.list(), [])
})
