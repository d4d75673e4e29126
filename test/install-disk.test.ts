// The full install against real disks: loop devices backed by sparse files, the real
// sfdisk, mkfs, mount and chroot, an in-process si-server on loopback. Needs root and
// the disk tools; skipped (with the reason) otherwise.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSiError } from '../src/errors.ts'
import { ImageServer } from '../src/server/image-server.ts'
import { INSTALL_ENV_FILE } from '../src/install/install-env.ts'
import { compareTrees } from '../src/image/verify.ts'
import type { InstallOptions } from '../src/install/install.ts'
import { resolveConfig } from '../src/install/config.ts'
import http from 'node:http'
import { NodeCredentials } from '../src/server/node-credentials.ts'
import { buildTestRoot, SRV_DIR } from '../scripts/e2e/test-image.ts'
import { installOnce, LoopDisks, sh, skipUnlessRootWith, type InstallRun } from './helpers/loop-install.ts'

const MiB = 1024 * 1024
const TOOLS = ['losetup', 'sfdisk', 'partx', 'mkfs.ext4', 'mkfs.xfs', 'mkswap', 'blkid', 'mount', 'chroot', 'busybox']
const skip = skipUnlessRootWith(TOOLS, 'loop devices, mount')
/** What an installed system may differ in from its image: what the install writes. */
const INSTALL_WRITES = new Set(['.', 'etc', 'etc/fstab', 'etc/motd', 'lost+found', 'boot/efi', 'etc/swarmimager', INSTALL_ENV_FILE])

let dir: string
let server: ImageServer
let sourceRoot: string
const loops = new LoopDisks()

function serverPort (): number { return server.httpPort }

/**
 * Mounts an installed file system to look at it. Read-write, not -o ro: a mount namespace
 * another process made while the install had it mounted (a concurrent `ip netns exec` on
 * a shared machine) may still hold it read-write, and the kernel then refuses a read-only
 * mount ("would change RO state"). Nothing here writes to it.
 */
function mountToCheck (device: string, where: string): void {
  sh('mount', [device, where])
}

async function loopDevice (name: string, bytes: number): Promise<string> {
  return await loops.create(join(dir, `${name}.img`), bytes)
}

function layout (device: string): unknown {
  return {
    image: 'e2e',
    disks: [{
      device,
      partitions: [
        { name: 'swap', size: '16MiB', fs: 'swap' },
        { name: 'root', size: '128MiB', fs: 'ext4', mount: '/', label: 'root' },
        { name: 'srv', size: 'rest', fs: 'xfs', mount: `/${SRV_DIR}` }
      ]
    }],
    postInstall: ['echo "installed $SI_NODE from $SI_IMAGE" > /etc/motd'],
    finish: 'poweroff'
  }
}

async function writePlan (node: string, plan: unknown): Promise<void> {
  await mkdir(join(dir, 'plans/hosts'), { recursive: true })
  await writeFile(join(dir, 'plans/hosts', `${node}.json`), JSON.stringify(plan))
}

async function run (node: string, extra: Partial<InstallOptions> = {}): Promise<InstallRun> {
  const { config } = resolveConfig({ flags: { server: `http://127.0.0.1:${server.httpPort}`, 'seed-wait': 'none' } })
  return await installOnce({
    config,
    node,
    macs: ['52:54:00:00:00:01'],
    target: join(dir, `target-${node}`),
    finishFile: join(dir, `finish-${node}`),
    planRetry: { attempts: 1, retryMs: 0 },
    ...extra
  }, config.monitor)
}

before(async () => {
  if (skip !== false) return
  dir = await mkdtemp(join(tmpdir(), 'si-install-'))
  sourceRoot = join(dir, 'source')
  await buildTestRoot(sourceRoot, { dataBytes: 2 * MiB })
  server = new ImageServer({ repoDir: join(dir, 'repo'), plansDir: join(dir, 'plans'), host: '127.0.0.1', port: 0, peerPort: 0 })
  await server.repo.add('e2e', { from: sourceRoot, pieceLength: 256 * 1024 })
  await server.start()
})

after(async () => {
  if (skip !== false) return
  await server?.stop()
  loops.detachAll()
  await rm(dir, { recursive: true, force: true })
})

test('installs a plan onto a blank disk: GPT, ext4 + xfs + swap, fstab by UUID, post-install, finish', { skip }, async () => {
  const disk = await loopDevice('ok', 512 * MiB)
  await writePlan('node-ok', layout(disk))
  const { events, result, error } = await run('node-ok')
  assert.equal(error, undefined, String((error as Error)?.message))
  assert.equal(result?.finish, 'poweroff')
  assert.equal((await readFile(join(dir, 'finish-node-ok'), 'utf8')).trim(), 'poweroff')
  assert.ok(events.some(e => e.type === 'installed'))

  const table = JSON.parse(sh('sfdisk', ['--json', disk])).partitiontable
  assert.equal(table.label, 'gpt')
  assert.deepEqual(table.partitions.map((p: { type: string }) => p.type), ['0657FD6D-A4AB-43C4-84E5-0933C84B4F4F', '0FC63DAF-8483-4772-8E79-3D69D8477DE4', '0FC63DAF-8483-4772-8E79-3D69D8477DE4'])
  assert.equal(table.partitions[0].start, 2048)
  assert.equal(table.partitions[1].size, 128 * 2048)

  const mnt = join(dir, 'check')
  await mkdir(mnt, { recursive: true })
  mountToCheck(`${disk}p2`, mnt)
  try {
    mountToCheck(`${disk}p3`, join(mnt, SRV_DIR))
    try {
      // atime: the post-install steps run the image's busybox, which reads files.
      const diffs = (await compareTrees(sourceRoot, mnt, { ignore: ['atime'] })).filter(d => !INSTALL_WRITES.has(d.path))
      assert.deepEqual(diffs, [])
      assert.equal(await readFile(join(mnt, 'etc/motd'), 'utf8'), 'installed node-ok from e2e\n')
      assert.match(await readFile(join(mnt, INSTALL_ENV_FILE), 'utf8'), /^SI_NODE='node-ok'$/m)
      const fstab = await readFile(join(mnt, 'etc/fstab'), 'utf8')
      for (const [n, fs] of [[1, 'swap'], [2, 'ext4'], [3, 'xfs']] as const) {
        const uuid = sh('blkid', ['-s', 'UUID', '-o', 'value', `${disk}p${n}`]).trim()
        assert.equal(sh('blkid', ['-s', 'TYPE', '-o', 'value', `${disk}p${n}`]).trim(), fs)
        assert.match(fstab, new RegExp(`^UUID=${uuid}\\s`, 'm'), `fstab names ${fs} by UUID ${uuid}`)
      }
      assert.match(fstab, /^proc \/proc proc/m, 'non-disk lines of the image fstab are kept')
      assert.doesNotMatch(fstab, /\/dev\/sda1/)
    } finally { sh('umount', [join(mnt, SRV_DIR)]) }
  } finally { sh('umount', [mnt]) }
  const report = server.fleet.list().find(n => n.node === 'node-ok')
  assert.equal(report?.phase, 'done')
  assert.equal(report?.step, 'installed')
})

test('a disk too small for the layout fails before anything is written', { skip }, async () => {
  const disk = await loopDevice('small', 200 * MiB)
  await writePlan('node-small', layout(disk))
  const { error, events } = await run('node-small')
  assert.ok(isSiError(error, 'ERR_DISK_TOO_SMALL'), String(error))
  assert.match((error as Error).message, /too small.*nothing was written/)
  const failed = events.find(e => e.type === 'error')
  assert.equal(failed !== undefined && 'step' in failed ? failed.step : undefined, 'disks')
  const head = Buffer.alloc(MiB)
  const fh = await open(join(dir, 'small.img'), 'r')
  await fh.read(head, 0, MiB, 0)
  await fh.close()
  assert.ok(head.every(b => b === 0), 'the disk is untouched')
  assert.equal(server.fleet.list().find(n => n.node === 'node-small')?.phase, 'failed')
})

test('an unknown disk and a disk in use are refused with their reason', { skip }, async () => {
  await writePlan('node-unknown', layout('/dev/si-no-such-disk'))
  const unknown = await run('node-unknown')
  assert.ok(isSiError(unknown.error, 'ERR_DISK_NOT_FOUND'), String(unknown.error))
  assert.match((unknown.error as Error).message, /unknown disk \/dev\/si-no-such-disk.*disks present/)

  const busy = await loopDevice('busy', 64 * MiB)
  sh('mkfs.ext4', ['-q', '-F', busy])
  const mnt = join(dir, 'busy-mnt')
  await mkdir(mnt, { recursive: true })
  sh('mount', [busy, mnt])
  try {
    await writePlan('node-busy', layout(busy))
    const inUse = await run('node-busy')
    assert.ok(isSiError(inUse.error, 'ERR_DISK_IN_USE'), String(inUse.error))
    assert.match((inUse.error as Error).message, /is mounted on/)
  } finally { sh('umount', [mnt]) }
})

test('an unreachable server and a node without a plan fail with a clear message', { skip }, async () => {
  const { config } = resolveConfig({ flags: { server: 'http://127.0.0.1:1' } })
  const unreachable = await run('node-x', { config })
  assert.ok(isSiError(unreachable.error, 'ERR_SERVER_UNREACHABLE'), String(unreachable.error))
  const noPlan = await run('node-without-plan')
  assert.ok(isSiError(noPlan.error, 'ERR_PLAN_NOT_FOUND'), String(noPlan.error))
})

/** The real CLI, asynchronously: the server it talks to runs in this process. */
async function agent (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stderr: string }> {
  return await new Promise(resolve => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/si-agent.ts', 'install', '--cmdline', '/dev/null', ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 }, (err, _stdout, stderr) => {
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stderr })
    })
  })
}

test('si-agent install --dry-run shows the plan and partitions and writes nothing; "auto" never takes a disk in use', { skip }, async () => {
  const disk = await loopDevice('dry', 512 * MiB)
  await writePlan('node-dry', layout(disk))
  const server = `http://127.0.0.1:${serverPort()}`
  const dry = await agent(['--server', server, '--node', 'node-dry', '--dry-run', '--target', join(dir, 'target-dry')])
  assert.equal(dry.status, 0, dry.stderr)
  assert.match(dry.stderr, new RegExp(`disks: ${disk}: ${disk}p1 16 MiB swap, ${disk}p2 128 MiB ext4 /, ${disk}p3 \\d+ MiB xfs /srv`))
  assert.equal(sh('sh', ['-c', `head -c 1048576 ${join(dir, 'dry.img')} | tr -d '\\0' | wc -c`]).trim(), '0')

  // The host's own disks are mounted: "auto" must refuse them all rather than pick one.
  await writePlan('node-auto', { ...(layout('auto') as object), disks: [{ device: 'auto', partitions: [{ size: 'rest', fs: 'ext4', mount: '/' }] }] })
  const auto = await agent(['--server', server, '--node', 'node-auto', '--dry-run'])
  assert.equal(auto.status, 1)
  assert.match(auto.stderr, /ERR_DISK_NOT_FOUND: no disk to install on/)
})

test('an invalid kernel command line is shown on the console and reported to the server', { skip }, async () => {
  const r = await agent(['--node', 'node-badcfg'], { SI_SERVER: `127.0.0.1:${serverPort()}`, SI_SEED_WAIT: 'sometimes' })
  assert.equal(r.status, 1)
  assert.match(r.stderr, /si-agent: error: ERR_CONFIG: environment SI_SEED_WAIT="sometimes": expected none, swarm/)
  const report = server.fleet.list().find(n => n.node === 'node-badcfg')
  assert.equal(report?.phase, 'failed')
  assert.equal(report?.error?.code, 'ERR_CONFIG')
})

const OVER_SECRET = 's3cret-for-the-step'

test('overrides are laid over the image, in order, before fstab and post-install', { skip }, async () => {
  const site = join(dir, 'site')
  await mkdir(join(site, 'etc'), { recursive: true })
  await writeFile(join(site, 'etc/motd'), 'site override\n')
  await writeFile(join(site, 'etc/hostname'), 'from-override\n')
  await server.overrides.add('e2e-site', { from: site })
  const disk = await loopDevice('over', 256 * MiB)
  await writePlan('node-over', {
    image: 'e2e',
    overrides: ['e2e-site'],
    disks: [{ device: disk, partitions: [{ size: 'rest', fs: 'ext4', mount: '/' }] }],
    postInstall: ['cat /etc/hostname > /etc/hostname.seen', 'echo "$SI_SECRET_SEEN" > /etc/secret.seen'],
    secrets: { SEEN: OVER_SECRET },
    finish: 'reboot'
  })
  // Trusting the server's key (the image and the override are checked) and proving itself: the plan's secret reaches the step.
  const token = (await NodeCredentials.open(join(dir, 'repo'))).deploymentToken()
  const { config } = resolveConfig({ flags: { server: `http://127.0.0.1:${server.httpPort}`, 'seed-wait': 'none', 'trusted-key': server.signer!.publicKey, token } })
  const { error, events } = await run('node-over', { config })
  assert.equal(error, undefined, String((error as Error)?.message))
  assert.equal(events.filter(e => e.type === 'warning').length, 0, 'nothing unauthenticated')
  assert.doesNotMatch(JSON.stringify(server.fleet.list()) + JSON.stringify(events), new RegExp(OVER_SECRET), 'the secret shows nowhere')
  const mnt = join(dir, 'check-over')
  await mkdir(mnt, { recursive: true })
  mountToCheck(`${disk}p1`, mnt)
  try {
    assert.equal(await readFile(join(mnt, 'etc/secret.seen'), 'utf8'), `${OVER_SECRET}\n`)
    assert.equal(await readFile(join(mnt, 'etc/motd'), 'utf8'), 'site override\n')
    assert.equal(await readFile(join(mnt, 'etc/hostname.seen'), 'utf8'), 'from-override\n')
    assert.equal(await readFile(join(mnt, 'usr/share/doc/e2e/README'), 'utf8'), 'Installed by swarmimager\'s end-to-end test.\n')
    assert.equal(existsSync(join(mnt, '.si-incomplete')), false, 'the target is complete')
  } finally { sh('umount', [mnt]) }
})

test('an install trusting the server\'s key refuses a rogue torrent before any disk is written', { skip }, async () => {
  const disk = await loopDevice('untrusted', 256 * MiB)
  await writePlan('node-untrusted', layout(disk))
  // The same image in another repository: another key. A host in between answers the
  // node's plan request from the real server, its torrent requests from the rogue.
  const rogue = new ImageServer({ repoDir: join(dir, 'rogue-repo'), host: '127.0.0.1', port: 0, peerPort: 0, seed: false })
  await rogue.repo.add('e2e', { from: sourceRoot, pieceLength: 256 * 1024 })
  await rogue.start()
  const between = http.createServer((req, res) => {
    const upstream = req.url?.startsWith('/images/') === true ? rogue.httpPort : server.httpPort
    void fetch(`http://127.0.0.1:${upstream}${req.url ?? '/'}`).then(async r => {
      const body = Buffer.from(await r.arrayBuffer())
      res.writeHead(r.status, Object.fromEntries([...r.headers.entries()].filter(([k]) => k !== 'transfer-encoding' && k !== 'content-length')))
      res.end(body)
    }, () => { res.writeHead(502); res.end() })
  })
  await new Promise<void>(resolve => between.listen(0, '127.0.0.1', resolve))
  try {
    const port = (between.address() as { port: number }).port
    const { config } = resolveConfig({ flags: { server: `http://127.0.0.1:${port}`, monitor: `http://127.0.0.1:${server.httpPort}`, 'seed-wait': 'none', 'trusted-key': server.signer!.publicKey } })
    const { error, events } = await run('node-untrusted', { config })
    assert.ok(isSiError(error, 'ERR_UNTRUSTED'), String(error))
    assert.match((error as Error).message, new RegExp(`torrent from .* is signed by ${rogue.signer!.publicKey}, not by the trusted key`))
    const failed = events.find(e => e.type === 'error')
    assert.equal(failed !== undefined && 'step' in failed ? failed.step : undefined, 'download')
    assert.ok(!events.some(e => e.type === 'phase' && e.phase === 'partition'), 'no partition step began')
    assert.equal(sh('sh', ['-c', `tr -d '\\0' < ${join(dir, 'untrusted.img')} | wc -c`]).trim(), '0', 'the disk is untouched: all zeros')
    assert.equal(server.fleet.list().find(n => n.node === 'node-untrusted')?.phase, 'failed', 'the refusal is reported')
  } finally {
    between.closeAllConnections()
    await new Promise(resolve => between.close(resolve))
    await rogue.stop()
  }
})
