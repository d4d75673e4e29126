import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import {
  chmod, lchown, link, lstat, lutimes, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile
} from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { makeJail } from './helpers/jail.ts'
import * as tar from 'tar-stream'
import { isSiError } from '../src/errors.ts'
import { packDirectory } from '../src/image/pack.ts'
import { compareTrees, diffSnapshots, snapshotArchive, snapshotTree } from '../src/image/verify.ts'
import { extractTar } from '../src/deploy/extract.ts'

const IS_ROOT = process.getuid?.() === 0
const HIGH_UID = 300_000
const HIGH_GID = 300_001
const OLD = new Date('2001-02-03T04:05:06Z')
const LONG_NAME = 'd'.repeat(60) + '/' + 'f'.repeat(120)
/** Packing lists the source's directories, which moves their atimes: compare the rest. */
const SOURCE_IGNORES = { ignore: ['atime'] }

type After = { after(fn: () => Promise<void>): void }

async function tempDir (t: After, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function run (cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`)
}

/** A tree with every kind of entry and attribute the extractor must restore. */
async function buildTree (root: string): Promise<void> {
  await mkdir(join(root, 'a/b/c'), { recursive: true })
  await mkdir(join(root, 'empty'))
  await writeFile(join(root, 'empty-file'), '')
  await writeFile(join(root, 'a/b/c/binary.dat'), randomBytes(5 * 1024 * 1024 + 17))
  await writeFile(join(root, 'a/hard1'), 'same inode\n')
  await link(join(root, 'a/hard1'), join(root, 'a/b/hard2'))
  await symlink('b/c/binary.dat', join(root, 'a/rel-link'))
  await symlink('/no/such/target', join(root, 'dangling'))
  await symlink('/' + 't'.repeat(150), join(root, 'long-target'))
  await writeFile(join(root, 'suid'), '#!/bin/sh\n')
  await chmod(join(root, 'suid'), 0o4755)
  await mkdir(join(root, 'sgid-dir'))
  await chmod(join(root, 'sgid-dir'), 0o2775)
  await mkdir(join(root, 'sticky'))
  await chmod(join(root, 'sticky'), 0o1777)
  await mkdir(join(root, 'readonly-dir'))
  await writeFile(join(root, 'readonly-dir/inside'), 'x')
  await chmod(join(root, 'readonly-dir'), 0o555)
  await writeFile(join(root, 'secret'), 'no one')
  await chmod(join(root, 'secret'), 0o000)
  await writeFile(join(root, 'ünïcødé-名前.txt'), 'utf-8 name')
  await mkdir(join(root, 'd'.repeat(60)))
  await writeFile(join(root, LONG_NAME), 'long name')
  await writeFile(join(root, 'high-owner'), 'owned by 300000')
  await lchown(join(root, 'high-owner'), HIGH_UID, HIGH_GID)
  await lchown(join(root, 'dangling'), HIGH_UID, 7)
  run('mkfifo', [join(root, 'fifo')])
  run('mknod', [join(root, 'null-dev'), 'c', '1', '3'])
  await chmod(join(root, 'null-dev'), 0o666)
  // mtimes last, deepest first, so children do not bump their parents.
  const all = await listAll(root)
  for (const rel of all.reverse()) {
    const p = join(root, rel)
    await lutimes(p, OLD, new Date(OLD.getTime() + rel.length * 1000))
  }
  await chmod(root, 0o755)
  await utimes(root, OLD, OLD)
}

async function listAll (root: string, rel = ''): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(join(root, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${e.name}` : e.name
    out.push(child)
    if (e.isDirectory()) out.push(...await listAll(root, child))
  }
  return out
}

async function packToFile (src: string, dir: string): Promise<string> {
  const file = join(dir, 'image.tar')
  await packDirectory(src, file)
  return file
}

async function craft (entries: Array<{ header: Record<string, unknown>; data?: string }>): Promise<Buffer> {
  const pack = tar.pack()
  for (const { header, data } of entries) pack.entry(header as any, data ?? '')
  pack.finalize()
  const chunks: Buffer[] = []
  for await (const c of pack) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

test('pack -> extract -> compareTrees finds no difference', { skip: !IS_ROOT && 'needs root for owners and devices' }, async t => {
  const src = await tempDir(t, 'si-src-')
  const work = await tempDir(t, 'si-work-')
  const dst = await tempDir(t, 'si-dst-')
  await buildTree(src)
  const tarFile = await packToFile(src, work)

  const seen: string[] = []
  const result = await extractTar(createReadStream(tarFile), dst, { onEntry: name => seen.push(name) })
  assert.equal(result.entries, seen.length)
  assert.ok(result.bytes > 5 * 1024 * 1024)
  assert.deepEqual(await compareTrees(src, dst, SOURCE_IGNORES), [])
  assert.deepEqual(diffSnapshots(await snapshotArchive(createReadStream(tarFile)), await snapshotTree(dst)), [], 'atimes included')

  const h1 = await stat(join(dst, 'a/hard1'))
  const h2 = await stat(join(dst, 'a/b/hard2'))
  assert.equal(h1.ino, h2.ino, 'hard links stay one inode')
  assert.equal(h1.nlink, 2)
  assert.equal((await lstat(join(dst, 'high-owner'))).uid, HIGH_UID)
  assert.equal((await lstat(join(dst, 'fifo'))).isFIFO(), true)
  assert.equal((await lstat(join(dst, 'null-dev'))).rdev, (await lstat(join(src, 'null-dev'))).rdev)
})

test('GNU tar reads our archives with the same attributes (pax owners included)', { skip: (!IS_ROOT && 'needs root') || (spawnSync('tar', ['--version']).status !== 0 && 'no tar') }, async t => {
  const src = await tempDir(t, 'si-src-')
  const work = await tempDir(t, 'si-work-')
  const dst = await tempDir(t, 'si-dst-')
  await buildTree(src)
  const tarFile = await packToFile(src, work)
  run('tar', ['--numeric-owner', '--same-owner', '-p', '-xf', tarFile, '-C', dst])
  // GNU tar does not restore atimes.
  assert.deepEqual(await compareTrees(src, dst, SOURCE_IGNORES), [])
})

for (const format of ['gnu', 'posix']) {
  test(`archives made by GNU tar (--format=${format}) extract with the same attributes`, { skip: (!IS_ROOT && 'needs root') || (spawnSync('tar', ['--version']).status !== 0 && 'no tar') }, async t => {
    const src = await tempDir(t, 'si-src-')
    const work = await tempDir(t, 'si-work-')
    const dst = await tempDir(t, 'si-dst-')
    await buildTree(src)
    const tarFile = join(work, 'gnu.tar')
    run('tar', [`--format=${format}`, '--numeric-owner', '-cf', tarFile, '-C', src, '.'])
    await extractTar(createReadStream(tarFile), dst)
    assert.deepEqual(await compareTrees(src, dst, SOURCE_IGNORES), [])
  })
}

test('extracting again over an existing tree replaces entries without writing through them', async t => {
  const base = await tempDir(t, 'si-base-')
  const dst = join(base, 'target')
  const outside = join(base, 'outside')
  await mkdir(dst)
  await mkdir(outside)
  await writeFile(join(outside, 'precious'), 'original')
  // A hard link and a symlink to files outside the target sit where the archive's files go.
  await link(join(outside, 'precious'), join(dst, 'hl'))
  await symlink(join(outside, 'via-symlink'), join(dst, 'sl'))
  const archive = await craft([
    { header: { name: 'hl', mode: 0o644 }, data: 'new content' },
    { header: { name: 'sl', mode: 0o644 }, data: 'new content' }
  ])
  await extractTar(Readable.from([archive]), dst)
  assert.equal(await readFile(join(outside, 'precious'), 'utf8'), 'original')
  assert.deepEqual(await readdir(outside), ['precious'])
  assert.equal(await readFile(join(dst, 'hl'), 'utf8'), 'new content')
  assert.equal((await lstat(join(dst, 'sl'))).isFile(), true)
  assert.equal((await stat(join(outside, 'precious'))).nlink, 1)
})

const HOSTILE: Array<{ what: string; entries: (outside: string) => Array<{ header: Record<string, unknown>; data?: string }>; entry: RegExp }> = [
  { what: 'a ".." path', entries: () => [{ header: { name: '../outside/x' }, data: 'evil' }], entry: /\.\.\/outside\/x/ },
  { what: 'an absolute path', entries: outside => [{ header: { name: join(outside, 'abs') }, data: 'evil' }], entry: /is absolute/ },
  {
    what: 'a file under a symlink to outside',
    entries: outside => [
      { header: { name: 'a', type: 'symlink', linkname: outside } },
      { header: { name: 'a/evil' }, data: 'evil' }
    ],
    entry: /"a\/evil".*parent "a" is a symlink/
  },
  {
    what: 'a directory under a symlink to outside',
    entries: outside => [
      { header: { name: 'a', type: 'symlink', linkname: outside } },
      { header: { name: 'a/sub/', type: 'directory' } }
    ],
    entry: /parent "a" is a symlink/
  },
  { what: 'a hard link to ../../etc/passwd', entries: () => [{ header: { name: 'pw', type: 'link', linkname: '../../etc/passwd' } }], entry: /"pw".*hard link target.*\.\./ },
  { what: 'a hard link to an absolute path', entries: () => [{ header: { name: 'pw', type: 'link', linkname: '/etc/passwd' } }], entry: /"pw".*absolute/ },
  {
    what: 'a hard link through a symlink',
    entries: outside => [
      { header: { name: 's', type: 'symlink', linkname: join(outside, '..', 'victim') } },
      { header: { name: 'h', type: 'link', linkname: 's/file' } }
    ],
    entry: /"h".*symlink "s"/
  },
  {
    what: 'a ".." hidden in a pax path',
    entries: () => [{ header: { name: 'x/' + 'y'.repeat(120) + '/../../../outside/pax' }, data: 'evil' }],
    entry: /has a "\.\." component/
  },
  { what: 'a file replacing the target itself', entries: () => [{ header: { name: './' }, data: '' }], entry: /replace the target directory/ }
]

for (const c of HOSTILE) {
  test(`hostile archive rejected: ${c.what}`, async t => {
    const { base, target, outside, victim } = await makeJail(t)
    const archive = await craft(c.entries(outside))
    await assert.rejects(extractTar(Readable.from([archive]), target), (err: unknown) => {
      assert.ok(isSiError(err, 'ERR_UNSAFE_ARCHIVE'), `expected ERR_UNSAFE_ARCHIVE, got ${String(err)}`)
      assert.match(err.message, c.entry)
      return true
    })
    assert.deepEqual(await readdir(outside), [], 'nothing created outside the target')
    assert.deepEqual((await readdir(base)).sort(), ['outside', 'target', 'victim'])
    assert.equal((await stat(join(victim, 'file'))).nlink, 1)
  })
}

test('a truncated archive fails with ERR_ARCHIVE, garbage too', async t => {
  const dst = await tempDir(t, 'si-dst-')
  const archive = await craft([{ header: { name: 'big' }, data: 'x'.repeat(10_000) }])
  await assert.rejects(extractTar(Readable.from([archive.subarray(0, 3000)]), dst), (err: unknown) => isSiError(err, 'ERR_ARCHIVE'))
  await assert.rejects(extractTar(Readable.from([randomBytes(2048)]), dst), (err: unknown) => isSiError(err, 'ERR_ARCHIVE'))
})

test('an input stream error rejects instead of hanging', async t => {
  const dst = await tempDir(t, 'si-dst-')
  const archive = await craft([{ header: { name: 'big' }, data: 'x'.repeat(10_000) }])
  const input = new Readable({ read () {} })
  input.push(archive.subarray(0, 1024))
  setTimeout(() => input.destroy(new Error('connection reset')), 20)
  await assert.rejects(extractTar(input, dst), /connection reset/)
})

test('an abort signal stops extraction with ERR_ABORTED', async t => {
  const dst = await tempDir(t, 'si-dst-')
  const input = new Readable({ read () {} }) // never ends on its own
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 20)
  await assert.rejects(extractTar(input, dst, { signal: ac.signal }), (err: unknown) => isSiError(err, 'ERR_ABORTED'))
  assert.equal(input.destroyed, true)
})
