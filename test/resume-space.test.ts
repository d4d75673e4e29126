// Real images on real nodes: a run killed halfway is followed by one that starts from its
// verified pieces; what dead runs left is removed at the next start; and a target too
// small for the image is refused before a byte is fetched (ERR_NO_SPACE, as is an
// ENOSPC during extraction).
import { test, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { isSiError } from '../src/errors.ts'
import { extractTar } from '../src/deploy/extract.ts'
import { checkSpace } from '../src/deploy/space.ts'
import { removeDeadStaging } from '../src/deploy/staging.ts'
import { removeDeadWork } from '../src/image/repository.ts'
import { compareTrees } from '../src/image/verify.ts'
import { PieceStore, RESUME_SUFFIX } from '../src/swarm/piece-store.ts'
import { createTorrent, parseTorrent, withTrackers, UNPACKED_KEY } from '../src/torrent/metainfo.ts'
import { seededBytes } from './helpers/trees.ts'
import { addGeneratedImage, Background, jsonEvents, requireBuild, run, startServer, SI_AGENT, type ImageServerHandle } from './helpers/processes.ts'
import * as tar from 'tar-stream'

const IMAGE_MB = 24
/** Slow enough that the first agent is still downloading when it is killed. */
const SERVER_UPLOAD_LIMIT = '3MB'
const AGENT_TIMEOUT_MS = 120_000
const KILL_AT_PROGRESS = /"progress":0\.[3-8]/

let dir: string
let source: string
let repo: string
let server: ImageServerHandle | undefined

before(async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-resume-'))
  ;({ source, repo } = await addGeneratedImage(dir, 'golden', IMAGE_MB))
  server = await startServer(repo, ['--upload-limit', SERVER_UPLOAD_LIMIT])
})

after(async () => {
  await server?.process.stop()
  await rm(dir, { recursive: true, force: true })
})

/** A pid no process has any more. */
async function deadPid (): Promise<number> {
  const child = spawn('true')
  await once(child, 'close')
  return child.pid!
}

function deployArgs (target: string, staging: string): string[] {
  return ['deploy', '--server', server!.url, '--image', 'golden', '--target', target, '--staging', staging, '--json', '--seed-wait', 'none', '--no-report', '--peer-host', '127.0.0.1']
}

test('an agent killed halfway is followed by one that starts from its verified pieces and extracts over what it left', async () => {
  const target = join(dir, 'target-resumed')
  const staging = join(dir, 'staging-resumed')
  const first = new Background(SI_AGENT, deployArgs(target, staging))
  try {
    await first.waitForOutput(KILL_AT_PROGRESS, AGENT_TIMEOUT_MS)
  } finally {
    first.child.kill('SIGKILL')
    await first.stop()
  }
  const left = await readdir(staging)
  assert.ok(left.some(n => /^si-[0-9a-f]{40}\.tar$/.test(n)), `the killed run left its staging file: ${left.join(', ')}`)
  assert.ok(left.some(n => n.endsWith(RESUME_SUFFIX)), `and its resume data: ${left.join(', ')}`)

  const second = await run(SI_AGENT, deployArgs(target, staging), { timeoutMs: AGENT_TIMEOUT_MS })
  assert.equal(second.code, 0, second.stdout.slice(-2000) + second.stderr.slice(-2000))
  const events = jsonEvents(second.stdout)
  const resumed = events.map(e => /resuming with (\d+) of (\d+) pieces/.exec(String(e.detail ?? ''))).find(m => m !== null)
  assert.ok(resumed, 'the second run says it resumes')
  assert.ok(Number(resumed[1]) > 0 && Number(resumed[1]) < Number(resumed[2]), `resumed ${resumed[1]} of ${resumed[2]} pieces`)
  const done = events.find(e => e.type === 'done')!
  const imageSize = (await readFile(join(repo, 'images/golden/1/image.tar'))).length
  assert.ok((done.downloaded as number) < imageSize * 0.8, `the second run fetched ${String(done.downloaded)} of ${imageSize} bytes`)
  assert.deepEqual(await compareTrees(source, target), [])
  assert.deepEqual((await readdir(staging)).filter(n => n.startsWith('si-')), [], 'a finished run leaves no staging behind')
})

/** A directory on a tmpfs of `size` (root only: skipped otherwise), for `body`. */
async function onSmallTmpfs (t: TestContext, name: string, size: string, body: (target: string) => Promise<void>): Promise<void> {
  const target = join(dir, name)
  await mkdir(target)
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, `sx-${name}`, target])
  if (mounted.status !== 0) { t.skip(`cannot mount a tmpfs: ${mounted.stderr.toString().trim()}`); return }
  try {
    await body(target)
  } finally {
    spawnSync('umount', [target])
  }
}

test('a target too small for the image is refused with ERR_NO_SPACE before a byte is fetched', async t => {
  await onSmallTmpfs(t, 'target-small', '4m', async target => {
    const sentBefore = (await server!.status()).serverBytesSent
    const r = await run(SI_AGENT, deployArgs(target, join(dir, 'staging-small')), { timeoutMs: AGENT_TIMEOUT_MS })
    assert.notEqual(r.code, 0)
    const failure = jsonEvents(r.stdout).find(e => e.type === 'error')
    assert.equal(failure?.code, 'ERR_NO_SPACE', r.stdout + r.stderr)
    assert.match(String(failure?.message), /target .* needs \d+ MiB and \d+ inodes; the file system has [0-4] MiB free/)
    assert.equal(jsonEvents(r.stdout).some(e => e.type === 'progress' && (e.verifiedBytes as number) > 0), false)
    assert.equal((await server!.status()).serverBytesSent, sentBefore, 'the server sent nothing')
  })
})

test('an ENOSPC while extracting is ERR_NO_SPACE naming the target, not an archive error', async t => {
  await onSmallTmpfs(t, 'target-enospc', '1m', async target => {
    const pack = tar.pack()
    pack.entry({ name: 'big', size: 3 << 20 }, seededBytes('big', 3 << 20))
    pack.finalize()
    await assert.rejects(extractTar(Readable.from(pack), target), err => {
      assert.ok(isSiError(err, 'ERR_NO_SPACE'), String(err))
      assert.match(err.message, new RegExp(`entry "big": target ${target} is full`))
      return true
    })
  })
})

test('checkSpace adds up needs on one file system and names each, with what is free', async () => {
  await checkSpace([{ what: 'staging', dir, bytes: 1 }, { what: 'target', dir, bytes: 1, inodes: 1 }])
  await assert.rejects(checkSpace([{ what: 'staging', dir, bytes: 2 ** 52 }, { what: 'target', dir, bytes: 1 }]), err => {
    assert.ok(isSiError(err, 'ERR_NO_SPACE'))
    assert.match(err.message, /staging .* needs \d+ MiB, target .* needs 1 MiB; the file system has \d+ MiB free/)
    return true
  })
})

test('the unpacked size rides outside info: same info hash, kept when the server rewrites trackers, checked when present', async () => {
  const file = join(dir, 'payload')
  await writeFile(file, seededBytes('payload', 100_000))
  const plain = parseTorrent(await createTorrent({ file, name: 'p.tar' }))
  const raw = await createTorrent({ file, name: 'p.tar', unpacked: { bytes: 123 * 4096, entries: 45 } })
  const sized = parseTorrent(withTrackers(raw, { announce: ['http://127.0.0.1:1/announce'], urlList: [] }))
  assert.equal(sized.infoHashHex, plain.infoHashHex)
  assert.deepEqual(sized.unpacked, { bytes: 123 * 4096, entries: 45 })
  assert.equal(plain.unpacked, undefined)
  const bad = Buffer.from(raw.toString('latin1').replace(`${UNPACKED_KEY.length}:${UNPACKED_KEY}d5:bytesi`, `${UNPACKED_KEY.length}:${UNPACKED_KEY}d5:bytesi-`), 'latin1')
  assert.throws(() => parseTorrent(bad), err => isSiError(err, 'ERR_INVALID_TORRENT'))
})

test('resume data from another boot is checked again: pieces that no longer match are dropped', async () => {
  const file = join(dir, 'resume-store.tar')
  const payload = join(dir, 'resume-payload')
  const pieceLength = 16 * 1024
  await writeFile(payload, seededBytes('resume', pieceLength * 4))
  const meta = parseTorrent(await createTorrent({ file: payload, name: 'r.tar', pieceLength }))
  const content = await readFile(payload)
  const { store } = await PieceStore.openResumable(file, meta, meta.infoHashHex)
  for (const i of [0, 1, 3]) {
    store.writeBlock(i, 0, content.subarray(i * pieceLength, (i + 1) * pieceLength))
    assert.equal((await store.commit(i)).verified, true)
  }
  await store.close()

  const same = await PieceStore.openResumable(file, meta, meta.infoHashHex)
  assert.deepEqual(same.resumed, { pieces: 3, rehashed: 0 }, 'trusted within the same boot')
  await same.store.close()

  const data = JSON.parse(await readFile(file + RESUME_SUFFIX, 'utf8')) as { bootId: string }
  await writeFile(file + RESUME_SUFFIX, JSON.stringify({ ...data, bootId: 'another-boot' }))
  const handle = await import('node:fs/promises').then(fs => fs.open(file, 'r+'))
  await handle.write(Buffer.from('damaged'), 0, 7, pieceLength) // inside piece 1
  await handle.close()
  const later = await PieceStore.openResumable(file, meta, meta.infoHashHex)
  assert.deepEqual(later.resumed, { pieces: 2, rehashed: 3 })
  assert.deepEqual([0, 1, 2, 3].map(i => later.store.has(i)), [true, false, false, true])
  await later.store.close()

  await writeFile(file + RESUME_SUFFIX, JSON.stringify({ ...data, infoHash: '0'.repeat(40) }))
  const other = await PieceStore.openResumable(file, meta, meta.infoHashHex)
  assert.deepEqual(other.resumed, { pieces: 0, rehashed: 0 }, 'resume data of another torrent is ignored')
  await other.store.close()
})

test('what dead runs left is removed at the next start; what live ones use is kept', async () => {
  const staging = join(dir, 'staging-dead')
  await mkdir(staging)
  const dead = await deadPid()
  const live = spawn('sleep', ['30'])
  try {
    const [ours, gone, busy] = ['a', 'b', 'c'].map(c => c.repeat(40))
    const names = {
      ours: [`si-${ours}.tar`, `si-${ours}.tar${RESUME_SUFFIX}`],
      gone: [`si-${gone}.tar`, `si-${gone}.tar${RESUME_SUFFIX}`, `si-${gone}.tar.pid`],
      busy: [`si-${busy}.tar`, `si-${busy}.tar.pid`],
      privateDead: [`si-${gone.slice(0, 16)}-${dead}-0123abcd.tar`],
      privateLive: [`si-${gone.slice(0, 16)}-${live.pid}-0123abcd.tar`]
    }
    for (const n of Object.values(names).flat()) await writeFile(join(staging, n), n.endsWith('.pid') ? `${n.includes(busy) ? live.pid : dead}\n` : 'x')
    const removed = await removeDeadStaging([staging], ours, staging)
    assert.equal(removed.length, 2, removed.join(', '))
    assert.deepEqual((await readdir(staging)).sort(), [...names.ours, ...names.busy, ...names.privateLive].sort())

    const imageDir = join(dir, 'repo-dead', 'images', 'x')
    await mkdir(join(imageDir, `.incoming-3-${dead}-0123456789ab`), { recursive: true })
    await mkdir(join(imageDir, `.incoming-4-${live.pid}-0123456789ab`))
    await mkdir(join(imageDir, '.trash-2-0123456789ab'))
    await mkdir(join(imageDir, '1'))
    assert.deepEqual((await removeDeadWork(imageDir)).sort(), [`.incoming-3-${dead}-0123456789ab`, '.trash-2-0123456789ab'])
    assert.deepEqual((await readdir(imageDir)).sort(), [`.incoming-4-${live.pid}-0123456789ab`, '1'])
  } finally {
    live.kill()
  }
})
