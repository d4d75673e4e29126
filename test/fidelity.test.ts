// Exact round trip of every attribute a Linux root file system carries: a fixture tree
// with each attribute class, and a real debootstrap minbase tree (cached), packed,
// extracted through extractTar and checked with the product's checker; GNU tar reads
// our archives and its extraction passes the checker; the checker finds each kind of
// difference.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { chmod, link, lstat, lutimes, mkdir, mkdtemp, open, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { packDirectory } from '../src/image/pack.ts'
import { BLOCK, encodeHeader, padding } from '../src/image/tar-format.ts'
import { readTar } from '../src/image/tar-reader.ts'
import { ImageRepository } from '../src/image/repository.ts'
import { TimeFixer, nodeTimes } from '../src/image/times.ts'
import { diffSnapshots, formatDifference, snapshotArchive, snapshotTree, type Difference } from '../src/image/verify.ts'
import { INCOMPLETE_MARKER, extractTar } from '../src/deploy/extract.ts'
import {
  BINARY_XATTR, CAP_NET_RAW, GIB, HIGH_UID, LATIN1_NAME, buildFixtureTree, debootstrapTree, hasTool, must, run
} from './fidelity-fixtures.ts'

const IS_ROOT = process.getuid?.() === 0
const TOOLS = ['setfattr', 'getfattr', 'setfacl', 'tar', 'mknod', 'perl'].filter(t => !hasTool(t))
const SKIP = (!IS_ROOT && 'needs root (owners, devices, trusted.* xattrs)') || (TOOLS.length > 0 && `missing tools: ${TOOLS.join(', ')}`)
const SERVER = join(import.meta.dirname, '..', 'src', 'cli', 'si-server.ts')

type After = { after(fn: () => Promise<void>): void; diagnostic(msg: string): void }

async function tempDir (t: After, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function noDiffs (diffs: Difference[], what: string): void {
  assert.deepEqual(diffs.map(formatDifference), [], what)
}

/** Fixture tree packed once for the tests below (9 GiB sparse file included). */
let shared: Promise<{ base: string; src: string; tar: string }> | undefined
function fixtureArchive (): Promise<{ base: string; src: string; tar: string }> {
  shared ??= (async () => {
    const base = await mkdtemp(join(tmpdir(), 'si-fidelity-'))
    process.on('exit', () => spawnSync('rm', ['-rf', base]))
    const src = join(base, 'src')
    await mkdir(src)
    await buildFixtureTree(src, { huge: true })
    const tar = join(base, 'fixture.tar')
    await packDirectory(src, tar)
    return { base, src, tar }
  })()
  return shared
}

test('fixture tree: every attribute class survives pack -> extractTar, zero differences', { skip: SKIP }, async t => {
  const { src, tar } = await fixtureArchive()
  const dst = await tempDir(t, 'si-dst-')
  const expected = await snapshotArchive(createReadStream(tar))
  noDiffs(diffSnapshots(await snapshotTree(src), expected), 'source vs archive (atimes included)')
  const result = await extractTar(createReadStream(tar), dst)
  assert.ok(result.entries > 40)
  noDiffs(diffSnapshots(expected, await snapshotTree(dst)), 'archive vs extracted tree')
  noDiffs(diffSnapshots(expected, await snapshotTree(dst)), 'checking twice gives the same answer')

  // A few classes checked directly too, independent of the checker.
  const xattr = (path: string, name: string): string => /=0x([0-9a-f]*)/.exec(must('getfattr', ['-h', '--absolute-names', '-n', name, '-e', 'hex', path]))?.[1] ?? ''
  assert.equal(xattr(join(dst, 'usr/bin/ping'), 'security.capability'), CAP_NET_RAW.toString('hex'))
  assert.equal(xattr(join(dst, 'xattr-file'), 'user.binary'), BINARY_XATTR.toString('hex'))
  assert.match(must('getfacl', ['-n', '-p', join(dst, 'acl-dir')]), /default:user:1234:rwx/)
  const big = await lstat(join(dst, 'sparse-9g'), { bigint: true })
  assert.equal(big.size, BigInt(9 * GIB + 12345))
  assert.ok(big.blocks * 512n < 10n * 1024n * 1024n, `9 GiB file stays sparse (${big.blocks * 512n} bytes allocated)`)
  assert.equal((await lstat(join(dst, 'links/one'))).nlink, 3)
  assert.equal((await lstat(join(dst, 'high-owner'))).uid, HIGH_UID)
  assert.equal((await lstat(join(dst, 'dev/high'))).rdev, (await lstat(join(src, 'dev/high'))).rdev)
  assert.equal(await readFile(Buffer.from(join(dst, LATIN1_NAME.toString('latin1')), 'latin1'), 'utf8'), 'latin-1 name\n')
  assert.equal((await lstat(join(dst, 'suid'), { bigint: true })).mtimeNs, -86_400_500_000_000n)
  await assert.rejects(lstat(join(dst, INCOMPLETE_MARKER)), /ENOENT/, 'marker removed on success')
})

test('GNU tar lists our archive (--xattrs --acls -tvf) without a warning', { skip: SKIP }, async () => {
  const { tar } = await fixtureArchive()
  const r = run('tar', ['--xattrs', '--acls', '-tvf', tar])
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stderr, '')
  assert.match(r.stdout, /-rw-r--r-- +root\/root +9663688761 .* \.\/sparse-9g\n/)
  assert.match(r.stdout, /crw------- +root\/root +4095,1048575 .* \.\/dev\/high/)
  assert.match(r.stdout, /-rw-rwxr--\+ .* \.\/acl-file/)
  assert.match(r.stdout, /high\/high .* \.\/high-owner/)
})

test('a tree extracted by GNU tar passes the checker (atime aside: GNU tar does not restore it)', { skip: SKIP }, async t => {
  const { tar } = await fixtureArchive()
  const dst = await tempDir(t, 'si-gnu-')
  must('tar', ['--xattrs', '--xattrs-include=*', '--acls', '--numeric-owner', '--same-owner', '-p', '-xf', tar, '-C', dst])
  noDiffs(diffSnapshots(await snapshotArchive(createReadStream(tar)), await snapshotTree(dst), { ignore: ['atime'] }), 'archive vs GNU tar extraction')
})

test('archives GNU tar makes (--format=posix --xattrs --acls --sparse) extract exactly', { skip: SKIP }, async t => {
  const { src } = await fixtureArchive()
  const work = await tempDir(t, 'si-gnu-')
  const dst = join(work, 'dst')
  await mkdir(dst)
  const tar = join(work, 'gnu.tar')
  must('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '--acls', '--sparse', '--numeric-owner', '--atime-preserve=system', '-cf', tar, '-C', src, '.'])
  await extractTar(createReadStream(tar), dst)
  noDiffs(diffSnapshots(await snapshotArchive(createReadStream(tar)), await snapshotTree(dst)), 'GNU archive vs our extraction')
  noDiffs(diffSnapshots(await snapshotTree(src), await snapshotTree(dst), { ignore: ['atime'] }), 'source vs our extraction of the GNU archive')
})

test('nanosecond times without perl: the touch route gives the same times', { skip: SKIP }, async t => {
  const dir = await tempDir(t, 'si-times-')
  const names = [join(dir, 'file'), join(dir, 'link'), Buffer.from(join(dir, 'odd-\xe9'), 'latin1').toString('latin1'), dir]
  await writeFile(names[0], 'x')
  await symlink('/nowhere', names[1])
  await writeFile(Buffer.from(names[2], 'latin1'), 'y')
  const fixer = new TimeFixer({ perl: false })
  const wanted = [
    { atimeNs: 1_600_000_000_123_456_789n, mtimeNs: 1_500_000_000_987_654_321n },
    { atimeNs: 1_700_000_000_000_000_001n, mtimeNs: 1_700_000_000_000_000_001n },
    { atimeNs: -1_500_000_000n, mtimeNs: 13_000_000_000_250_000_000n },
    { atimeNs: 1_234_567_890_000_001_000n, mtimeNs: 1_234_567_890_999_999_999n }
  ]
  for (const [i, n] of names.entries()) {
    // As the extractor does: Node first (exact where a double can be), touch for the rest.
    const approx = nodeTimes(wanted[i])
    await lutimes(Buffer.from(n, 'latin1'), approx.atime, approx.mtime)
    fixer.add(n, wanted[i])
  }
  await fixer.apply()
  for (const [i, n] of names.entries()) {
    const st = await lstat(Buffer.from(n, 'latin1'), { bigint: true })
    assert.deepEqual([st.atimeNs, st.mtimeNs], [wanted[i].atimeNs, wanted[i].mtimeNs], Buffer.from(n, 'latin1').toString())
  }
})

test('the checker lists each kind of difference', { skip: SKIP }, async t => {
  const { tar } = await fixtureArchive()
  const dst = await tempDir(t, 'si-diff-')
  await extractTar(createReadStream(tar), dst)
  const expected = await snapshotArchive(createReadStream(tar))
  const p = (rel: string): string => join(dst, rel)
  must('setfattr', ['-x', 'security.capability', p('usr/bin/ping')])
  must('setfattr', ['-n', 'user.binary', '-v', '0x00', p('xattr-file')])
  must('setfacl', ['-k', p('acl-dir')])
  must('touch', ['-h', '-m', '-d', '@1500000000.000000001', p('empty-file')])
  must('touch', ['-h', '-a', '-d', '@1500000000.000000001', p('empty-dir')])
  await chmod(p('suid'), 0o755)
  await unlink(p('links/two'))
  await writeFile(p('links/two'), 'three names\n')
  await unlink(p('dev/high'))
  must('mknod', [p('dev/high'), 'c', '4095', '1048574'])
  must('dd', ['if=/dev/zero', `of=${p('sparse-middle')}`, 'bs=1M', 'count=4', 'conv=notrunc', 'status=none'])
  await unlink(p('dangling'))
  await symlink('/elsewhere', p('dangling'))
  await mkdir(p(INCOMPLETE_MARKER))
  const found = new Set(diffSnapshots(expected, await snapshotTree(dst)).map(d => `${d.path} ${d.attribute}`))
  for (const want of [
    'usr/bin/ping xattrs', 'links/ping-again xattrs', 'xattr-file xattrs', 'acl-dir acl-default', 'empty-file mtime',
    'empty-dir atime', 'suid mode', 'links/one hardlinks', 'links/two hardlinks', 'dev/high device',
    'sparse-middle sparse', 'sparse-middle content', 'dangling target', `${INCOMPLETE_MARKER} presence`
  ]) assert.ok(found.has(want), `expected "${want}" among:\n${[...found].join('\n')}`)
})

test('debootstrap minbase image: pack (zstd), extract, zero differences', { skip: SKIP, timeout: 15 * 60_000 }, async t => {
  const deb = await debootstrapTree()
  if (deb.dir === undefined) {
    t.skip(`no debootstrap tree: ${deb.why ?? ''} (the fixture tests cover every attribute class)`)
    return
  }
  const work = await tempDir(t, 'si-deb-')
  const repo = new ImageRepository(join(work, 'repo'))
  let started = Date.now()
  const plain = await repo.add('minbase', { from: deb.dir, compression: 'none' })
  const plainMs = Date.now() - started
  started = Date.now()
  const v = await repo.add('minbase', { from: deb.dir, compression: 'zstd' })
  const zstdMs = Date.now() - started
  const dst = join(work, 'target')
  await mkdir(dst)
  started = Date.now()
  const result = await extractTar(createReadStream(v.tarPath, { highWaterMark: 1024 * 1024 }), dst)
  const extractMs = Date.now() - started
  t.diagnostic(`debootstrap minbase: ${result.entries} entries, tar ${plain.size} bytes (pack+hash ${plainMs} ms), zstd ${v.size} bytes (pack+hash ${zstdMs} ms), extract from zstd ${extractMs} ms`)
  noDiffs(diffSnapshots(await snapshotArchive(createReadStream(plain.tarPath)), await snapshotTree(dst)), 'debootstrap archive vs extracted tree')
  noDiffs(diffSnapshots(await snapshotTree(deb.dir), await snapshotTree(dst)), 'debootstrap source vs extracted tree')
})

test('si-server image verify: exit 0 on an exact target, 1 with the differences listed', { skip: SKIP }, async t => {
  const work = await tempDir(t, 'si-cli-')
  const src = join(work, 'src')
  const dst = join(work, 'dst')
  await mkdir(src)
  await mkdir(dst)
  await buildFixtureTree(src)
  const repo = join(work, 'repo')
  const cli = (...args: string[]): ReturnType<typeof run> => run(process.execPath, ['--import', 'tsx', SERVER, ...args, '--repo', repo], { timeout: 120_000 })
  const added = cli('image', 'add', 'fixture', '--from', src, '--compression', 'gzip')
  assert.equal(added.status, 0, added.stderr)
  assert.equal(added.stdout, 'fixture@1\n')
  const v = await new ImageRepository(repo).resolve('fixture')
  assert.equal(v.compression, 'gzip')
  await extractTar(createReadStream(v.tarPath), dst)
  const ok = cli('image', 'verify', 'fixture', '--against', dst)
  assert.equal(ok.status, 0, ok.stdout + ok.stderr)
  assert.match(ok.stderr, /no difference/)
  await chmod(join(dst, 'suid'), 0o755)
  await link(join(dst, 'empty-file'), join(dst, 'extra-link'))
  const bad = cli('image', 'verify', 'fixture@1', '--against', dst)
  assert.equal(bad.status, 1)
  assert.match(bad.stdout, /^suid: mode: expected 4755, found 0755$/m)
  assert.match(bad.stdout, /^extra-link: presence: expected absent, found present$/m)
})

test('a dense file over 8 GiB: pax size, read back by us and by GNU tar', { skip: SKIP }, async t => {
  const dir = await tempDir(t, 'si-big-')
  const size = 9 * GIB + 7
  const header = encodeHeader({ path: Buffer.from('big.img'), type: 'file', mode: 0o600, uid: 0, gid: 0, mtimeNs: 1_700_000_000_000_000_000n, size })
  assert.ok(header.includes(Buffer.from(` size=${size}\n`)), 'pax size record')
  // The archive itself is a sparse file: the 9 GiB of content are a hole, cheap to make.
  const file = join(dir, 'big.tar')
  const fh = await open(file, 'w')
  await fh.write(header, 0, header.length, 0)
  await fh.truncate(header.length + size + padding(size) + 2 * BLOCK)
  await fh.close()
  const listed = run('tar', ['-tvf', file])
  assert.equal(listed.status, 0, listed.stderr)
  assert.match(listed.stdout, new RegExp(` ${size} .* \\./big\\.img\n`))
  for await (const { entry } of readTar(createReadStream(file))) {
    assert.equal(entry.size, size)
    assert.equal(entry.path.toString(), 'big.img')
    break
  }
})
