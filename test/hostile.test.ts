// Hostile archives: each escape from the target, separately, is refused with an error
// naming the entry; nothing is created, modified or followed outside the target; and
// the target keeps its .si-incomplete marker (with the reason), so it never looks
// installed. Archives are written byte by byte with our own encoder, so they can say
// things no honest packer would.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { lstat, readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { makeJail } from './helpers/jail.ts'
import { isSiError, type SiErrorCode } from '../src/errors.ts'
import { BLOCK, encodeHeader, encodeSparseMap, padding, type TarEntry } from '../src/image/tar-format.ts'
import { INCOMPLETE_MARKER, extractTar } from '../src/deploy/extract.ts'

const IS_ROOT = process.getuid?.() === 0
const WHEN = 1_600_000_000_000_000_000n

interface Member { entry: Omit<Partial<TarEntry>, 'path'> & { path: string | Buffer }; data?: Buffer; raw?: Buffer }

function member (path: string | Buffer, more: Omit<Partial<TarEntry>, 'path'> = {}, data?: string): Member {
  return { entry: { path, ...more }, ...(data !== undefined ? { data: Buffer.from(data) } : {}) }
}

function archive (members: Member[]): Buffer {
  const parts: Buffer[] = []
  for (const m of members) {
    if (m.raw !== undefined) { parts.push(m.raw); continue }
    const data = m.data ?? Buffer.alloc(0)
    const e: TarEntry = {
      type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: WHEN, size: data.length, ...m.entry,
      path: typeof m.entry.path === 'string' ? Buffer.from(m.entry.path) : m.entry.path
    } as TarEntry
    parts.push(encodeHeader(e, { verbatimPath: true }))
    if (e.type === 'file') parts.push(data, Buffer.alloc(padding(data.length)))
  }
  parts.push(Buffer.alloc(2 * BLOCK))
  return Buffer.concat(parts)
}

/** A GNU long-name member ('L') followed by the header it names. */
function gnuLongName (name: string, then: TarEntry): Buffer {
  const value = Buffer.from(name + '\0')
  const h = encodeHeader({ path: Buffer.from('././@LongLink'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: value.length })
  h[156] = 0x4c // 'L'
  // Re-checksum after changing the type flag.
  h.fill(0x20, 148, 156)
  let sum = 0
  for (const b of h.subarray(0, BLOCK)) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1')
  return Buffer.concat([h.subarray(0, BLOCK), value, Buffer.alloc(padding(value.length)), encodeHeader(then)])
}

const setup = makeJail

interface Case {
  what: string
  members: (p: { outside: string; victim: string }) => Member[]
  code: SiErrorCode
  message: RegExp
}

const ESCAPES: Case[] = [
  { what: 'a ".." path', members: () => [member('../outside/x', {}, 'evil')], code: 'ERR_UNSAFE_ARCHIVE', message: /entry "\.\.\/outside\/x".*has a "\.\." component/ },
  { what: 'an absolute path', members: p => [member(join(p.outside, 'abs'), {}, 'evil')], code: 'ERR_UNSAFE_ARCHIVE', message: /outside\/abs.*is absolute/ },
  {
    what: 'a ".." hidden in a long pax path',
    members: () => [member('x/' + 'y'.repeat(120) + '/../../../outside/pax', {}, 'evil')],
    code: 'ERR_UNSAFE_ARCHIVE',
    message: /outside\/pax.*has a "\.\." component/
  },
  {
    what: 'a ".." in a GNU long name',
    members: () => [{ entry: { path: 'unused' }, raw: gnuLongName('z'.repeat(110) + '/../../outside/gnu', { path: Buffer.from('placeholder'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 0 }) }],
    code: 'ERR_UNSAFE_ARCHIVE',
    message: /outside\/gnu.*has a "\.\." component/
  },
  {
    what: 'a file under a symlink planted earlier',
    members: p => [member('a', { type: 'symlink', linkpath: Buffer.from(p.outside) }), member('a/evil', {}, 'evil')],
    code: 'ERR_UNSAFE_ARCHIVE',
    message: /entry "a\/evil": parent "a" is a symlink/
  },
  {
    what: 'a directory under a symlink planted earlier',
    members: p => [member('a', { type: 'symlink', linkpath: Buffer.from(p.outside) }), member('a/sub', { type: 'directory', mode: 0o755 })],
    code: 'ERR_UNSAFE_ARCHIVE',
    message: /entry "a\/sub": parent "a" is a symlink/
  },
  {
    what: 'a hard link through a symlink planted earlier',
    members: p => [member('s', { type: 'symlink', linkpath: Buffer.from(p.victim) }), member('h', { type: 'link', linkpath: Buffer.from('s/file') })],
    code: 'ERR_UNSAFE_ARCHIVE',
    message: /entry "h": link target passes through symlink "s"/
  },
  { what: 'a hard link to ../ outside', members: () => [member('pw', { type: 'link', linkpath: Buffer.from('../victim/file') })], code: 'ERR_UNSAFE_ARCHIVE', message: /entry "pw": hard link target.*"\.\."/ },
  { what: 'a hard link to an absolute path', members: p => [member('pw', { type: 'link', linkpath: Buffer.from(join(p.victim, 'file')) })], code: 'ERR_UNSAFE_ARCHIVE', message: /entry "pw": hard link target.*absolute/ },
  { what: 'a file replacing the target itself', members: () => [member('./', {}, 'x')], code: 'ERR_UNSAFE_ARCHIVE', message: /would replace the target directory/ },
  { what: 'the reserved marker name', members: () => [member(`${INCOMPLETE_MARKER}/planted`, {}, 'x')], code: 'ERR_UNSAFE_ARCHIVE', message: /reserved name/ },
  { what: 'a NUL byte in a pax path', members: () => [member(Buffer.from('a\0/' + 'b'.repeat(120)), {}, 'x')], code: 'ERR_UNSAFE_ARCHIVE', message: /NUL byte/ },
  {
    what: 'a device node used as a directory',
    members: () => [member('d', { type: 'character-device', devmajor: 1, devminor: 3 }), member('d/f', {}, 'x')],
    code: 'ERR_ARCHIVE',
    message: /entry "d\/f": parent "d" is not a directory/
  },
  {
    what: 'a sparse map reaching beyond the file',
    members: () => [{ entry: { path: 'sp' }, raw: sparseMember('sp', 100, [[50, 80]]) }],
    code: 'ERR_ARCHIVE',
    message: /entry "sp": sparse segment 50\+80/
  },
  {
    what: 'a pax header of 100 MB',
    members: () => [{ entry: { path: 'big' }, raw: oversizedPax() }],
    code: 'ERR_ARCHIVE',
    message: /pax header.*larger than/
  }
]

function sparseMember (name: string, size: number, map: Array<[number, number]>): Buffer {
  const e: TarEntry = { path: Buffer.from(name), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: WHEN, size, sparse: map }
  const mapBlock = encodeSparseMap(map)
  const data = Buffer.alloc(map.reduce((n, [, l]) => n + l, 0), 1)
  return Buffer.concat([encodeHeader(e), mapBlock, data, Buffer.alloc(padding(mapBlock.length + data.length))])
}

function oversizedPax (): Buffer {
  const h = encodeHeader({ path: Buffer.from('PaxHeaders/big'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 100 * 1024 * 1024 })
  h[156] = 0x78 // 'x'
  h.fill(0x20, 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1')
  return h
}

async function listing (dir: string): Promise<string[]> {
  return (await readdir(dir)).sort()
}

for (const c of ESCAPES) {
  test(`hostile archive refused: ${c.what}`, { skip: !IS_ROOT && 'needs root (device nodes)' }, async t => {
    const { base, target, outside, victim } = await setup(t)
    const bytes = archive(c.members({ outside, victim }))
    await assert.rejects(extractTar(Readable.from([bytes]), target), (err: unknown) => {
      assert.ok(isSiError(err, c.code), `expected ${c.code}, got ${String(err)}`)
      assert.match(err.message, c.message)
      return true
    })
    assert.deepEqual(await listing(outside), [], 'nothing created outside the target')
    assert.deepEqual(await listing(base), ['outside', 'target', 'victim'])
    assert.deepEqual(await listing(victim), ['file'])
    assert.equal(await readFile(join(victim, 'file'), 'utf8'), 'victim')
    assert.equal((await stat(join(victim, 'file'))).nlink, 1)
    // Never looks complete: the marker stays, with the reason.
    assert.match(await readFile(join(target, INCOMPLETE_MARKER, 'error'), 'utf8'), new RegExp(c.code))
  })
}

test('entries over a device node or a FIFO replace it: nothing is written through them', { skip: !IS_ROOT && 'needs root (device nodes)' }, async t => {
  const { target } = await setup(t)
  const bytes = archive([
    member('null', { type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 }),
    member('fifo', { type: 'fifo' }),
    member('alias', { type: 'link', linkpath: Buffer.from('null') }),
    member('null', {}, 'a file now'),
    member('fifo', {}, 'not blocked on a reader'), // opening the FIFO for writing would hang here
    member('alias', {}, 'alias replaced')
  ])
  await extractTar(Readable.from([bytes]), target)
  for (const [name, content] of [['null', 'a file now'], ['fifo', 'not blocked on a reader'], ['alias', 'alias replaced']]) {
    assert.ok((await lstat(join(target, name))).isFile(), name)
    assert.equal(await readFile(join(target, name), 'utf8'), content)
  }
  await assert.rejects(lstat(join(target, INCOMPLETE_MARKER)), /ENOENT/)
})

test('a symlink replaced by a real directory is no way out', async t => {
  const { target, outside } = await setup(t)
  const bytes = archive([
    member('a', { type: 'symlink', linkpath: Buffer.from(outside) }),
    member('a', { type: 'directory', mode: 0o755 }),
    member('a/inside', {}, 'stays in the target')
  ])
  await extractTar(Readable.from([bytes]), target)
  assert.ok((await lstat(join(target, 'a'))).isDirectory())
  assert.equal(await readFile(join(target, 'a/inside'), 'utf8'), 'stays in the target')
  assert.deepEqual(await listing(outside), [])
})

test('a truncated archive fails and leaves the target marked incomplete', async t => {
  const { target } = await setup(t)
  const bytes = archive([member('big', {}, 'x'.repeat(10_000))])
  await assert.rejects(extractTar(Readable.from([bytes.subarray(0, 3000)]), target), (err: unknown) => isSiError(err, 'ERR_ARCHIVE') && /truncated/.test(err.message))
  assert.ok((await lstat(join(target, INCOMPLETE_MARKER))).isDirectory())
})

test('an override cannot change the attributes of the target root', async t => {
  const { target } = await setup(t)
  spawnSync('chmod', ['0755', target])
  await extractTar(Readable.from([archive([member('./', { type: 'directory', mode: 0o777, uid: 4242 }), member('etc/motd', {}, 'hello')])]), target, { overlay: true })
  const st = await stat(target)
  assert.equal(st.mode & 0o7777, 0o755)
  assert.notEqual(st.uid, 4242)
  assert.equal(await readFile(join(target, 'etc/motd'), 'utf8'), 'hello')
})
