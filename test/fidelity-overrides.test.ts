// Overrides laid over an image: groups in order, then the host; each a versioned
// payload of its own; the target keeps its .si-incomplete marker until the last layer,
// the root keeps the image's attributes, and the checker expects image + overrides.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createReadStream } from 'node:fs'
import { chmod, lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { overrideChain, overrideRepository } from '../src/image/overrides.ts'
import { ImageRepository } from '../src/image/repository.ts'
import { diffSnapshots, formatDifference, snapshotArchive, snapshotTree } from '../src/image/verify.ts'
import { applyOverrides } from '../src/deploy/apply-overrides.ts'
import { INCOMPLETE_MARKER, extractTar } from '../src/deploy/extract.ts'

const IS_ROOT = process.getuid?.() === 0

async function tree (dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true })
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true })
    await writeFile(join(dir, rel), content)
  }
  return dir
}

test('overrides: groups then host, over the image, marker kept until the last layer', { skip: !IS_ROOT && 'needs root' }, async t => {
  const work = await mkdtemp(join(tmpdir(), 'si-overrides-'))
  t.after(() => rm(work, { recursive: true, force: true }))
  const images = new ImageRepository(join(work, 'repo'))
  const overrides = overrideRepository(join(work, 'repo'))
  const imageSrc = await tree(join(work, 'image'), { 'etc/motd': 'image\n', 'etc/hostname': 'template\n', 'usr/bin/tool': 'v1\n' })
  const image = await images.add('base', { from: imageSrc })
  const compute = await tree(join(work, 'compute'), { 'etc/motd': 'compute group\n', 'etc/compute.conf': 'x=1\n' })
  await chmod(compute, 0o777) // the override's root: must not become the target's
  await overrides.add('compute', { from: compute, compression: 'zstd' })
  await overrides.add('gpu', { from: await tree(join(work, 'gpu'), { 'etc/compute.conf': 'x=2\n' }) })
  await overrides.add('node07', { from: await tree(join(work, 'node07'), { 'etc/hostname': 'node07\n' }) })

  const chain = await overrideChain(overrides, { groups: ['compute', 'no-such-group', 'gpu'], host: 'node07' })
  assert.deepEqual(chain.map(v => `${v.name}@${v.version}`), ['compute@1', 'gpu@1', 'node07@1'])
  assert.deepEqual((await overrideChain(overrides, { groups: [], host: 'node99' })).map(v => v.name), [])

  const target = join(work, 'target')
  await mkdir(target)
  const first = await extractTar(createReadStream(image.tarPath), target, { keepMarker: true })
  assert.ok((await lstat(join(target, INCOMPLETE_MARKER))).isDirectory(), 'not complete before the overrides')
  const layers: string[] = []
  await applyOverrides(target, chain.map(v => ({ name: v.name, open: () => createReadStream(v.tarPath) })), first.rootTimes, {
    onLayer: name => layers.push(name)
  })
  assert.deepEqual(layers, ['compute', 'gpu', 'node07'])
  await assert.rejects(lstat(join(target, INCOMPLETE_MARKER)), /ENOENT/)

  // The checker's expectation: the image with each override laid over it.
  let expected = await snapshotArchive(createReadStream(image.tarPath))
  for (const [i, v] of chain.entries()) expected = await snapshotArchive(createReadStream(v.tarPath), { base: expected, layer: `o${i}` })
  assert.equal(expected.get('')?.mode, (await snapshotArchive(createReadStream(image.tarPath))).get('')?.mode)
  assert.deepEqual(diffSnapshots(expected, await snapshotTree(target)).map(formatDifference), [])
  // And against the image alone, the overridden files are what differs.
  const alone = diffSnapshots(await snapshotArchive(createReadStream(image.tarPath)), await snapshotTree(target))
  assert.ok(alone.some(d => d.path === 'etc/hostname' && d.attribute === 'content'))
  assert.ok(alone.some(d => d.path === 'etc/compute.conf' && d.attribute === 'presence'))
  // Read last: reading moves atimes, which the checker compares.
  assert.equal(await readFile(join(target, 'etc/motd'), 'utf8'), 'compute group\n')
  assert.equal(await readFile(join(target, 'etc/compute.conf'), 'utf8'), 'x=2\n')
  assert.equal(await readFile(join(target, 'etc/hostname'), 'utf8'), 'node07\n')
  assert.equal(await readFile(join(target, 'usr/bin/tool'), 'utf8'), 'v1\n')
})
