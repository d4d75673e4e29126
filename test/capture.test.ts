// Golden-client capture against a real rsync daemon on 127.0.0.1 (a free port, our own
// config, stopped at the end): every attribute class arrives in the image, the default
// exclusions keep /proc, /tmp, /dev contents out, user exclusions add to them, and a
// second capture makes a new version.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { captureImage, parseCaptureSource } from '../src/image/capture.ts'
import { ImageRepository } from '../src/image/repository.ts'
import { diffSnapshots, formatDifference, snapshotArchive, snapshotTree } from '../src/image/verify.ts'
import { buildFixtureTree, hasTool } from './fidelity-fixtures.ts'

const IS_ROOT = process.getuid?.() === 0
const SKIP = (!IS_ROOT && 'needs root') || (!hasTool('rsync') && 'rsync is not installed') || (!hasTool('setfacl') && 'acl is not installed')
const DAEMON_START_TIMEOUT_MS = 10_000

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>(resolve => server.close(() => resolve()))
  return port
}

async function waitForPort (port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + DAEMON_START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`rsync daemon exited (${child.exitCode})`)
    const ok = await new Promise<boolean>(resolve => {
      const s = createConnection({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error('rsync daemon did not start')
}

/** An rsync daemon exporting `dir` as module "root", as a golden client would. */
async function rsyncDaemon (t: { after(fn: () => Promise<void>): void }, work: string, dir: string): Promise<number> {
  const port = await freePort()
  const conf = join(work, 'rsyncd.conf')
  await writeFile(conf, [
    `pid file = ${join(work, 'rsyncd.pid')}`,
    'use chroot = no',
    'munge symlinks = no',
    'numeric ids = yes',
    '[root]',
    `  path = ${dir}`,
    '  read only = yes',
    '  uid = 0',
    '  gid = 0',
    ''
  ].join('\n'))
  const child = spawn('rsync', ['--daemon', '--no-detach', `--config=${conf}`, '--address=127.0.0.1', `--port=${port}`], { stdio: 'ignore' })
  t.after(async () => {
    child.kill()
    if (child.exitCode === null) await new Promise(resolve => child.once('exit', resolve))
  })
  await waitForPort(port, child)
  return port
}

test('capture sources: HOST, HOST:MODULE, HOST:/PATH, rsync:// and local paths', () => {
  assert.equal(parseCaptureSource('golden').url, 'rsync://golden/root/')
  assert.equal(parseCaptureSource('golden', 8873).url, 'rsync://golden:8873/root/')
  assert.equal(parseCaptureSource('golden:img').url, 'rsync://golden/img/')
  assert.equal(parseCaptureSource('golden:/srv/root').url, 'golden:/srv/root/')
  assert.equal(parseCaptureSource('rsync://10.0.0.1/root').url, 'rsync://10.0.0.1/root/')
  assert.equal(parseCaptureSource('/srv/tree/').url, '/srv/tree/')
  assert.throws(() => parseCaptureSource('bad host'), /expected HOST/)
})

test('capture from an rsync daemon on loopback keeps every attribute, excludes what it should', { skip: SKIP, timeout: 120_000 }, async t => {
  const work = await mkdtemp(join(tmpdir(), 'si-capture-'))
  t.after(() => rm(work, { recursive: true, force: true }))
  const client = join(work, 'client')
  await mkdir(client)
  await buildFixtureTree(client)
  // What a running system has that an image must not: kernel and runtime file systems.
  for (const dir of ['proc/1', 'tmp', 'run/lock', 'var/log', 'sys/kernel']) await mkdir(join(client, dir), { recursive: true })
  await writeFile(join(client, 'proc/1/status'), 'State: R\n')
  await writeFile(join(client, 'sys/kernel/x'), '1\n')
  await writeFile(join(client, 'tmp/junk'), 'junk')
  await writeFile(join(client, 'run/lock/x.pid'), '1')
  await writeFile(join(client, 'var/log/syslog'), 'log')
  const port = await rsyncDaemon(t, work, client)

  const repo = new ImageRepository(join(work, 'repo'))
  const { version } = await captureImage(repo, 'golden', { from: '127.0.0.1', rsyncPort: port, excludes: ['/var/log/*'], compression: 'zstd' })
  assert.equal(version.version, 1)
  assert.equal(version.compression, 'zstd')
  const image = await snapshotArchive(createReadStream(version.tarPath))
  const keys = [...image.keys()]
  for (const gone of ['proc/1', 'tmp/junk', 'run/lock', 'var/log/syslog', 'sys/kernel', 'dev/null']) assert.ok(!keys.includes(gone), `${gone} excluded`)
  for (const kept of ['proc', 'tmp', 'run', 'var/log', 'sys', 'dev']) assert.equal(image.get(kept)?.type, 'directory', `${kept}/ kept, empty`)

  // Everything else is the client's, attribute for attribute (the fixture's /dev went with the exclusions).
  const excluded = /^(proc|sys|tmp|run|var\/log|dev)\//
  const client2 = await snapshotTree(client)
  for (const k of [...client2.keys()]) if (excluded.test(k)) client2.delete(k)
  for (const k of ['proc', 'sys', 'tmp', 'run', 'var/log', 'dev', '']) { client2.delete(k); image.delete(k) }
  // rsync carries atimes only to the second (--atimes), and sets directory and symlink
  // atimes itself: atime is the one attribute a capture does not keep exactly. rsync -S
  // (the capture's mandated options) turns runs of zeros into holes: a dense file of
  // zeros arrives sparse, with the same content.
  const diffs = diffSnapshots(client2, image, { ignore: ['atime'] }).filter(d => !(d.path === 'dense-zeros' && d.attribute === 'sparse'))
  assert.deepEqual(diffs.map(formatDifference), [])

  await writeFile(join(client, 'etc/changed'), 'second capture\n')
  const second = await captureImage(repo, 'golden', { from: `127.0.0.1:root`, rsyncPort: port })
  assert.equal(second.version.version, 2)
  assert.ok((await snapshotArchive(createReadStream(second.version.tarPath))).has('etc/changed'))
})

test('a capture from an unreachable source fails with ERR_CAPTURE and adds no version', { skip: SKIP, timeout: 60_000 }, async t => {
  const work = await mkdtemp(join(tmpdir(), 'si-capture-'))
  t.after(() => rm(work, { recursive: true, force: true }))
  const repo = new ImageRepository(join(work, 'repo'))
  await assert.rejects(captureImage(repo, 'golden', { from: '127.0.0.1', rsyncPort: await freePort() }), /ERR_CAPTURE|rsync from .* failed/)
  assert.deepEqual(await repo.list(), [])
})
