// Overrides through the swarm, end to end: a real si-server (in process, on loopback)
// with an image and overrides stored by `override add` for the plan, a group and a host;
// the plan a node gets lists them pinned to versions; the agent's real install lays them
// over the image on a loop device, in order, with their attributes; a torrent that is
// not the server's signed override is refused before any disk is written; the tracker
// tracks override versions; and a second agent takes override pieces from the first.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, chown, lstat, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import http from 'node:http'
import { ImageServer } from '../src/server/image-server.ts'
import { fetchOverrideTorrents, layOverrides, type LaidOverride } from '../src/install/overrides-step.ts'
import { overrideCommand } from '../src/cli/server-image.ts'
import { fetchersOf, readInUse } from '../src/server/in-use.ts'
import { resolveConfig } from '../src/install/config.ts'
import { decodeBencode, encodeBencode, isBencodeDict, type BencodeInput } from '../src/torrent/bencode.ts'
import { TORRENT_SIGNATURE_KEY, TORRENT_STATEMENT_KEY } from '../src/formats/image-statement.ts'
import { SIGNATURE_HEADER } from '../src/formats/signature.ts'
import { buildTestRoot, pseudoRandom } from '../scripts/e2e/test-image.ts'
import { installOnce, LoopDisks, sh, skipUnlessRootWith, type InstallRun } from './helpers/loop-install.ts'

const MiB = 1024 * 1024
const TOOLS = ['losetup', 'sfdisk', 'partx', 'mkfs.ext4', 'mount', 'setfattr', 'getfattr']
const skip = skipUnlessRootWith(TOOLS, 'loop devices, mount, owners')

let dir: string
let server: ImageServer
const loops = new LoopDisks()

async function tree (root: string, files: Record<string, string | Buffer>): Promise<string> {
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(join(root, rel, '..'), { recursive: true })
    await writeFile(join(root, rel), content)
  }
  return root
}

async function loopDevice (name: string, bytes: number): Promise<string> {
  return await loops.create(join(dir, `${name}.img`), bytes)
}

async function writePlan (rel: string, plan: unknown): Promise<void> {
  await mkdir(join(dir, 'plans', rel, '..'), { recursive: true })
  await writeFile(join(dir, 'plans', rel), JSON.stringify(plan))
}

function rootOnly (device: string): unknown {
  return { image: 'base', overrides: ['site'], disks: [{ device, partitions: [{ size: 'rest', fs: 'ext4', mount: '/' }] }], finish: 'reboot' }
}

async function run (node: string, flags: Record<string, string>): Promise<InstallRun> {
  const { config } = resolveConfig({ flags: { 'seed-wait': 'none', 'trusted-key': server.signer!.publicKey, ...flags } })
  return await installOnce({
    config,
    node,
    macs: ['52:54:00:00:00:02'],
    target: join(dir, `target-${node}`),
    finishFile: join(dir, `finish-${node}`),
    planRetry: { attempts: 1, retryMs: 0 }
  }, `http://127.0.0.1:${server.httpPort}`)
}

before(async () => {
  if (skip !== false) return
  dir = await mkdtemp(join(tmpdir(), 'si-overrides-install-'))
  const source = join(dir, 'source')
  await buildTestRoot(source, { dataBytes: 256 * 1024 })
  await tree(source, { 'etc/layer': 'image\n', 'etc/site.conf': 'image\n' })
  server = new ImageServer({ repoDir: join(dir, 'repo'), plansDir: join(dir, 'plans'), host: '127.0.0.1', port: 0, peerPort: 0 })
  await server.repo.add('base', { from: source, pieceLength: 256 * 1024 })
  // An image named as an override is: a splice must be told apart by the collection alone.
  for (let i = 0; i < 2; i++) await server.repo.add('site', { from: await tree(join(dir, `i/site${i}`), { 'etc/layer': 'the site image\n' }) })
  // The plan's own override, twice: the plan pins the latest.
  await server.overrides.add('site', { from: await tree(join(dir, 'o/site1'), { 'etc/layer': 'site v1\n' }) })
  await server.overrides.add('site', { from: await tree(join(dir, 'o/site2'), { 'etc/layer': 'site\n', 'etc/site.conf': 'site\n' }) })
  const rack = await tree(join(dir, 'o/rack'), { 'etc/layer': 'rack\n', 'etc/rack.conf': 'rack\n' })
  await chmod(join(rack, 'etc/rack.conf'), 0o640)
  await chown(join(rack, 'etc/rack.conf'), 1234, 5678)
  sh('setfattr', ['-n', 'user.si.layer', '-v', 'rack', join(rack, 'etc/rack.conf')])
  await server.overrides.add('rack', { from: rack })
  await server.overrides.add('gpu', { from: await tree(join(dir, 'o/gpu'), { 'etc/layer': 'gpu\n', 'etc/gpu.conf': 'gpu\n' }) })
  const host = await tree(join(dir, 'o/node1'), { 'etc/layer': 'node1\n', 'usr/local/bin/hello': '#!/bin/sh\necho hello\n' })
  await chmod(join(host, 'usr/local/bin/hello'), 0o4750)
  sh('setfattr', ['-n', 'user.si.layer', '-v', 'host', join(host, 'usr/local/bin/hello')])
  await server.overrides.add('node1', { from: host })
  await server.overrides.add('elsewhere', { from: await tree(join(dir, 'o/elsewhere'), { 'etc/layer': 'elsewhere\n' }) })
  // node1 is in rack and gpu (in this order), not in elsewhere.
  await mkdir(join(dir, 'plans'), { recursive: true })
  await writeFile(join(dir, 'plans/groups.conf'), 'rack node*\nelsewhere other*\ngpu node1 node2\n')
  await writePlan('groups/rack.json', { image: 'base', overrides: ['site'], disks: [{ partitions: [{ size: 'rest', fs: 'ext4', mount: '/' }] }] })
  await server.start()
})

after(async () => {
  if (skip !== false) return
  await server?.stop()
  loops.detachAll()
  await rm(dir, { recursive: true, force: true })
})

async function planOf (node: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${server.httpPort}/api/plan?node=${node}`)
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

test('a node\'s plan lists its overrides pinned to versions: the plan\'s, then its groups\' in groups.conf order, then its own', { skip }, async () => {
  const node1 = await planOf('node1')
  assert.equal(node1.status, 200, JSON.stringify(node1.body))
  assert.deepEqual((node1.body.plan as { overrides: string[] }).overrides, ['site@2', 'rack@1', 'gpu@1', 'node1@1'])
  const node7 = await planOf('node7')
  assert.deepEqual((node7.body.plan as { overrides: string[] }).overrides, ['site@2', 'rack@1'])
})

test('a plan naming an override that does not exist fails on the server, naming it and the plan', { skip }, async () => {
  await writePlan('hosts/node-missing.json', { ...rootOnly('/dev/null') as object, overrides: ['nosuch'] })
  const answer = await planOf('node-missing')
  assert.equal(answer.status, 500)
  assert.match(String(answer.body.error), /ERR_PLAN: plan .*hosts\/node-missing\.json: override "nosuch" not found/)
})

test('the tracker tracks the overrides\' info hashes and refuses one it does not serve', { skip }, async () => {
  const announce = async (infoHashHex: string): Promise<Record<string, unknown>> => {
    const q = `info_hash=${infoHashHex.replace(/../g, '%$&')}&peer_id=-XX0000-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=100&compact=1`
    const res = await fetch(`http://127.0.0.1:${server.httpPort}/announce?${q}`)
    const reply = decodeBencode(Buffer.from(await res.arrayBuffer()))
    assert.ok(isBencodeDict(reply))
    return reply as Record<string, unknown>
  }
  const site = await server.overrides.resolve('site@2')
  const served = await announce(site.infoHashHex)
  assert.equal(served['failure reason'], undefined, String(served['failure reason']))
  assert.ok(served.peers instanceof Uint8Array && served.peers.length >= 6, 'the seeder is listed: it seeds the override')
  const unknown = await announce('ab'.repeat(20))
  assert.match(Buffer.from(unknown['failure reason'] as Uint8Array).toString(), /is not served by this tracker/)
  assert.ok('override site@2' in server.seeder.uploaded().byImage, JSON.stringify(server.seeder.uploaded().byImage))
})

test('the install lays the overrides over the image in order (host over groups over the plan\'s), with their modes, owners and xattrs, reported as the overrides step', { skip }, async () => {
  const disk = await loopDevice('node1', 128 * MiB)
  await writePlan('hosts/node1.json', rootOnly(disk))
  const { error, events, result } = await run('node1', { server: `http://127.0.0.1:${server.httpPort}` })
  assert.equal(error, undefined, String((error as Error)?.message))
  assert.deepEqual(result?.overrides?.map(o => o.ref), ['site@2', 'rack@1', 'gpu@1', 'node1@1'])
  const steps = events.filter(e => e.type === 'phase' && e.phase === 'overrides').map(e => (e as { detail?: string }).detail ?? '')
  assert.ok(steps.some(s => s.startsWith('node1@1 over the image (4 of 4')), steps.join('\n'))
  const timeline = server.fleet.get('node1')?.timeline ?? []
  assert.ok(timeline.some(t => t.step === 'overrides' && t.phase === 'finalizing'), JSON.stringify(timeline))
  assert.match(String(server.fleet.get('node1')?.image), /^base\b/, 'the node\'s image stays the image, not an override')
  const mnt = join(dir, 'check-node1')
  await mkdir(mnt, { recursive: true })
  sh('mount', [`${disk}p1`, mnt])
  try {
    assert.equal(await readFile(join(mnt, 'etc/layer'), 'utf8'), 'node1\n', 'the host wins')
    assert.equal(await readFile(join(mnt, 'etc/site.conf'), 'utf8'), 'site\n', 'the plan\'s override over the image')
    assert.equal(await readFile(join(mnt, 'etc/gpu.conf'), 'utf8'), 'gpu\n')
    const rackConf = await lstat(join(mnt, 'etc/rack.conf'))
    assert.equal(rackConf.mode & 0o7777, 0o640)
    assert.deepEqual([rackConf.uid, rackConf.gid], [1234, 5678])
    assert.match(sh('getfattr', ['-n', 'user.si.layer', join(mnt, 'etc/rack.conf')]), /user\.si\.layer="rack"/)
    const hello = await lstat(join(mnt, 'usr/local/bin/hello'))
    assert.equal(hello.mode & 0o7777, 0o4750)
    assert.match(sh('getfattr', ['-n', 'user.si.layer', join(mnt, 'usr/local/bin/hello')]), /user\.si\.layer="host"/)
    assert.equal(await readFile(join(mnt, 'usr/share/doc/e2e/README'), 'utf8'), 'Installed by swarmimager\'s end-to-end test.\n', 'the image is under them')
    await assert.rejects(lstat(join(mnt, '.si-incomplete')), /ENOENT/)
  } finally { sh('umount', [mnt]) }
})

type Tamper = 'unsigned' | 'image-as-override' | 'replayed'

/** A host between the node and the server that alters what /overrides/ answers. */
async function tamperingProxy (mode: Tamper): Promise<{ url: string; close: () => Promise<void> }> {
  const upstream = `http://127.0.0.1:${server.httpPort}`
  const recorded = Buffer.from(await (await fetch(`${upstream}/overrides/site/2/image.torrent?nonce=AAAAAAAAAAAAAAAAAAAAAA`)).arrayBuffer())
  const proxy = http.createServer((req, res) => {
    const url = req.url ?? '/'
    const answer = async (): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> => {
      if (!url.startsWith('/overrides/site/')) {
        // Plans and the image as the server sent them, their signature header included.
        const r = await fetch(`${upstream}${url}`)
        const signature = r.headers.get(SIGNATURE_HEADER)
        return { status: r.status, headers: signature !== null ? { [SIGNATURE_HEADER]: signature } : {}, body: Buffer.from(await r.arrayBuffer()) }
      }
      return { status: 200, headers: {}, body: await override() }
    }
    const override = async (): Promise<Buffer> => {
      if (mode === 'replayed') return recorded
      const asked = new URL(url, upstream)
      // Spliced: the image of the same name and version, signed for the node's very request, in the override's place.
      const real = mode === 'image-as-override' ? `${upstream}/images/site/2/image.torrent${asked.search}` : `${upstream}${url}`
      const raw = Buffer.from(await (await fetch(real)).arrayBuffer())
      if (mode !== 'unsigned') return raw
      const top = decodeBencode(raw) as unknown as Record<string, BencodeInput>
      delete top[TORRENT_STATEMENT_KEY]
      delete top[TORRENT_SIGNATURE_KEY]
      return encodeBencode(top)
    }
    answer().then(({ status, headers, body }) => {
      res.writeHead(status, { ...headers, 'content-length': body.length })
      res.end(body)
    }, () => { res.writeHead(502); res.end() })
  })
  await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
  const port = (proxy.address() as { port: number }).port
  return { url: `http://127.0.0.1:${port}`, close: async () => { proxy.closeAllConnections(); await new Promise(resolve => proxy.close(resolve)) } }
}

test('an unsigned, spliced (the image as the override) or replayed override is refused with ERR_UNTRUSTED before anything is written', { skip }, async () => {
  const disk = await loopDevice('tamper', 64 * MiB)
  await writePlan('hosts/node-tamper.json', rootOnly(disk))
  for (const mode of ['unsigned', 'image-as-override', 'replayed'] as Tamper[]) {
    const proxy = await tamperingProxy(mode)
    try {
      const { error, events } = await run('node-tamper', { server: proxy.url })
      assert.equal((error as { code?: string })?.code, 'ERR_UNTRUSTED', `${mode}: ${String((error as Error)?.message)}`)
      assert.match((error as Error).message, /override site@2/, mode)
      assert.ok(!events.some(e => e.type === 'phase' && (e.phase === 'partition' || e.phase === 'disks')), `${mode}: stopped before the disks`)
    } finally { await proxy.close() }
    const head = Buffer.alloc(MiB)
    const fh = await open(disk, 'r')
    try { await fh.read(head, 0, MiB, 0) } finally { await fh.close() }
    assert.ok(head.every(b => b === 0), `${mode}: the disk is untouched`)
  }
})

/** A server of its own whose seeder uploads slowly (bytes per second), with one override of `bytes` random bytes. */
async function slowServer (t: { after: (fn: () => Promise<void>) => void }, name: string, bytes: number, uploadBytesPerSecond: number): Promise<ImageServer> {
  const slow = new ImageServer({ repoDir: join(dir, `${name}-repo`), plansDir: join(dir, 'plans'), host: '127.0.0.1', port: 0, peerPort: 0, uploadBytesPerSecond })
  await slow.overrides.add(name, { from: await tree(join(dir, 'o', name), { 'srv/blob': pseudoRandom(name, bytes) }), pieceLength: 256 * 1024, compression: 'none' })
  await slow.start()
  t.after(async () => { await slow.stop() })
  return slow
}

async function layOne (slow: ImageServer, ref: string, target: string, flags: Record<string, string>): Promise<LaidOverride> {
  const serverUrl = `http://127.0.0.1:${slow.httpPort}`
  const { config } = resolveConfig({ flags: { server: serverUrl, 'trusted-key': slow.signer!.publicKey, ...flags } })
  await mkdir(target, { recursive: true })
  const layers = await fetchOverrideTorrents(serverUrl, [ref], { trustedKey: config.trustedKey, planSource: 'test' })
  const [laid] = await layOverrides(layers, { target, settings: config, emit: () => {} })
  return laid
}

test('override rm refuses a version an agent is fetching; --force removes it and the agent stops at once with ERR_IMAGE_REMOVED', { skip }, async t => {
  const slow = await slowServer(t, 'rm-me', 12 * MiB, 1024 * 1024)
  const repoDir = join(dir, 'rm-me-repo')
  const fetching = layOne(slow, 'rm-me@1', join(dir, 'rm-target'), { 'seed-wait': 'none', 'stall-seconds': '120' })
  const outcome = fetching.then(() => undefined, (err: unknown) => err)
  const deadline = Date.now() + 20_000
  while (fetchersOf(await readInUse(repoDir), 'rm-me', 1, 'overrides').peers.length === 0) {
    assert.ok(Date.now() < deadline, 'the server records override rm-me@1 in use')
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  await assert.rejects(overrideCommand(['rm', 'rm-me', '--repo', repoDir]), (err: Error & { code?: string }) => err.code === 'ERR_IMAGE_IN_USE' && /override rm-me@1 is being fetched/.test(err.message))
  assert.equal((await slow.overrides.list()).length, 1, 'the refused rm removed nothing')
  const removedAt = Date.now()
  assert.equal(await overrideCommand(['rm', 'rm-me', '--force', '--repo', repoDir]), 0)
  const failure = await Promise.race([outcome, new Promise(resolve => setTimeout(resolve, 20_000, 'still running'))])
  assert.equal((failure as { code?: string })?.code, 'ERR_IMAGE_REMOVED', String((failure as Error)?.message ?? failure))
  process.stderr.write(`# override removed in use: the agent stopped ${((Date.now() - removedAt) / 1000).toFixed(1)} s after rm --force: ${(failure as Error).message}\n`)
})

test('a second agent takes the override\'s pieces from the first, not only from the server', { skip }, async t => {
  // What the agents lack from the slow seeder they find at each other.
  const slow = await slowServer(t, 'big', 4 * MiB, 512 * 1024)
  const agent = async (name: string): Promise<{ fromServer: number; downloaded: number }> => {
    const target = join(dir, `peer-${name}`)
    const laid = await layOne(slow, 'big@1', target, { 'seed-wait': 'swarm', 'seed-max': '30', poll: '0.5' })
    assert.ok((await readFile(join(target, 'srv/blob'))).equals(pseudoRandom('big', 4 * MiB)))
    return { fromServer: laid.result.figures.downloadedFromServer, downloaded: laid.result.figures.downloaded }
  }
  const [a, b] = await Promise.all([agent('a'), agent('b')])
  const fromPeers = a.downloaded - a.fromServer + b.downloaded - b.fromServer
  process.stderr.write(`# override of 4 MiB, seeder capped at 512 KiB/s: agent a ${a.fromServer} bytes from the server of ${a.downloaded}, agent b ${b.fromServer} of ${b.downloaded}\n`)
  assert.ok(fromPeers >= 256 * 1024, `pieces from peers: ${fromPeers} bytes (a ${JSON.stringify(a)}, b ${JSON.stringify(b)})`)
  assert.ok(slow.seeder.uploaded().byImage['override big@1'] < 2 * 4 * MiB, 'the server sent less than a copy per agent')
})
