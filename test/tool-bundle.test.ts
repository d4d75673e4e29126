// The agent's tool bundle step (src/install/tool-bundle.ts) against a real si-server on
// loopback: the bundle is an image of its own, fetched through the swarm from the
// server's seeder, checked against the trusted key, unpacked, linked into the system its
// tools run in (here a scratch root standing for the initramfs), its module list handed
// to si-coldplug, and seeded on until the install says stop. A server without the
// bundle, or one whose signature the node does not trust, stops the install at this
// step, before any disk is touched, naming the bundle.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSiError } from '../src/errors.ts'
import { ImageServer } from '../src/server/image-server.ts'
import { resolveConfig } from '../src/install/config.ts'
import { toolsStep, type RunningBundle, type ToolBundleSetup } from '../src/install/tool-bundle.ts'
import type { InstallEvent } from '../src/install/install-events.ts'
import { loadTorrent } from '../src/deploy/torrent-source.ts'
import { scrape } from '../src/swarm/tracker-client.ts'
import { Signer } from '../src/formats/signature.ts'
import { COLDPLUG_COMMAND, TOOL_BUNDLE_MODULES_FILE, toolBundleName } from '../src/formats/tool-bundle.ts'
import { SYSTEM_PATHS } from '../src/install/disks.ts'

const BUNDLE = toolBundleName('6.1.0-99-test')
const PROBE = 'usr/sbin/si-bundle-probe'
const WAIT_MS = 15_000

let dir: string
let server: ImageServer
let url: string

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'si-tool-bundle-'))
  // The bundle as make initrd writes it: a tool, the module list, a module index.
  const tree = join(dir, 'bundle')
  await mkdir(join(tree, 'usr/sbin'), { recursive: true })
  await mkdir(join(tree, 'etc/si'), { recursive: true })
  await mkdir(join(tree, 'lib/modules/6.1.0-99-test'), { recursive: true })
  await writeFile(join(tree, PROBE), '#!/bin/sh\necho "probe from the bundle: $*"\n', { mode: 0o755 })
  await writeFile(join(tree, TOOL_BUNDLE_MODULES_FILE), 'ext4\nxfs\n')
  await writeFile(join(tree, 'lib/modules/6.1.0-99-test/modules.dep'), 'kernel/fs/ext4/ext4.ko:\n')
  server = new ImageServer({ repoDir: join(dir, 'repo'), host: '127.0.0.1', port: 0, peerHost: '127.0.0.1', peerPort: 0, announceIntervalSeconds: 1 })
  await server.repo.add(BUNDLE, { from: tree, compression: 'zstd' })
  await server.start()
  url = `http://127.0.0.1:${server.httpPort}`
})

after(async () => {
  await server?.stop()
  await rm(dir, { recursive: true, force: true })
})

/** A scratch system: busybox's applet where the bundle's tool will go, and an si-coldplug that records its arguments. */
async function scratchRoot (name: string): Promise<ToolBundleSetup> {
  const root = join(dir, name)
  await mkdir(join(root, 'usr/sbin'), { recursive: true })
  await mkdir(join(root, 'sbin'), { recursive: true })
  await mkdir(join(root, 'etc/si'), { recursive: true })
  await symlink('/bin/busybox', join(root, PROBE))
  const coldplug = join(root, COLDPLUG_COMMAND)
  await writeFile(coldplug, `#!/bin/sh\necho "$@" >${join(root, 'coldplug.args')}\n`)
  await chmod(coldplug, 0o755)
  await writeFile(join(root, 'etc/si/tool-bundle'), `${BUNDLE}\n`)
  return { dir: join(root, 'run/si/tools'), root, nameFile: join(root, 'etc/si/tool-bundle') }
}

function settingsFor (extra: string): ReturnType<typeof resolveConfig>['config'] {
  return resolveConfig({ cmdline: `si.server=${url} si.seed_wait=swarm si.seed_max=60 si.poll=1 si.peer_host=127.0.0.1 si.stall=20 ${extra}` }).config
}

async function until (what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`not within ${WAIT_MS} ms: ${what}`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

test('the agent fetches the bundle its initramfs names through the swarm, links its tools over busybox, loads its modules and seeds it until stopped', async () => {
  const setup = await scratchRoot('node1')
  const config = settingsFor(`si.trusted_key=${server.signer?.publicKey ?? ''}`)
  const events: InstallEvent[] = []
  let running: RunningBundle | undefined
  try {
    running = await toolsStep({ server: url, setting: config.tools, trustedKey: config.trustedKey, settings: config, setup, paths: SYSTEM_PATHS, emit: e => events.push(e) })
    assert.ok(running !== undefined, 'the initramfs named a bundle')
    const tools = events.filter(e => e.type === 'phase' && e.phase === 'tools').map(e => e.type === 'phase' ? e.detail ?? '' : '')
    assert.match(tools[0], new RegExp(`^${BUNDLE.replace(/\./g, '\\.')} through the swarm`))
    // The figures come from the download's last progress report: a bundle this small may be in before the first.
    assert.match(running.summary, /in place(, \d+ bytes downloaded \(\d+ from the server, 0 from peers\))?: 3 files linked into .* \(1 replaced\)/)
    assert.ok(events.every(e => e.type !== 'progress' && e.type !== 'image'), 'the bundle\'s progress and image events stay out of the node\'s reports')

    // The tool replaced busybox's applet and runs by name from the system's PATH.
    const probe = join(setup.root, PROBE)
    assert.ok((await lstat(probe)).isSymbolicLink())
    assert.equal(await readlink(probe), join(setup.dir, PROBE))
    const ran = spawnSync('si-bundle-probe', ['ok'], { encoding: 'utf8', env: { PATH: `${join(setup.root, 'usr/sbin')}:/usr/bin:/bin` } })
    assert.equal(ran.stdout, 'probe from the bundle: ok\n')
    assert.equal(await readFile(join(setup.root, 'lib/modules/6.1.0-99-test/modules.dep'), 'utf8'), 'kernel/fs/ext4/ext4.ko:\n')
    // si-coldplug got the bundle's module list (the real one modprobes it, then every device's driver).
    assert.equal((await readFile(join(setup.root, 'coldplug.args'), 'utf8')).trim(), join(setup.root, TOOL_BUNDLE_MODULES_FILE))
    assert.equal(await readFile(join(setup.root, TOOL_BUNDLE_MODULES_FILE), 'utf8'), 'ext4\nxfs\n')

    // The node seeds the bundle to the nodes booting after it: the tracker counts it as a seed...
    const meta = await loadTorrent({ server: url, image: BUNDLE })
    const seeds = async (): Promise<number> => (await scrape(meta.announce[0], meta.infoHash)).complete
    await until('the node announced itself a seed of the bundle', async () => await seeds() >= 1)
    // ...until the install stops it.
    await running.stop()
    running = undefined
    await until('the node left the bundle\'s swarm', async () => await seeds() === 0)
    // (A bundle left seeding by an earlier test run leaves its staging file: removed, with a warning.)
    const warnings = events.filter(e => e.type === 'warning' && !/left by a run that is gone/.test(e.message))
    assert.deepEqual(warnings, [])
  } finally {
    await running?.stop()
  }
})

test('a server without the bundle stops the install at the tools step, naming the bundle it looked for', async () => {
  const setup = await scratchRoot('node2')
  await writeFile(setup.nameFile, 'si-tools-6.1.0-0-missing\n')
  const config = settingsFor('')
  await assert.rejects(
    toolsStep({ server: url, setting: config.tools, settings: config, setup, paths: SYSTEM_PATHS, emit: () => {} }),
    (e: Error) => isSiError(e, 'ERR_TOOL_BUNDLE') && /no tool bundle si-tools-6\.1\.0-0-missing on http:\/\/127\.0\.0\.1:\d+ .*si-server image add si-tools-6\.1\.0-0-missing --from dist\/tools.*make initrd TOOLS=inside/.test(e.message))
  assert.equal(await readlink(join(setup.root, PROBE)), '/bin/busybox', 'nothing linked')
})

test('a bundle signed by another key is refused; si.tools=none or an initramfs that names no bundle fetch nothing', async () => {
  const setup = await scratchRoot('node3')
  const config = settingsFor(`si.trusted_key=${Signer.generate().publicKey}`)
  await assert.rejects(toolsStep({ server: url, setting: config.tools, trustedKey: config.trustedKey, settings: config, setup, paths: SYSTEM_PATHS, emit: () => {} }),
    (e: Error) => isSiError(e, 'ERR_UNTRUSTED'))
  assert.equal(await readlink(join(setup.root, PROBE)), '/bin/busybox', 'nothing linked')
  const none = settingsFor('si.tools=none')
  assert.equal(await toolsStep({ server: url, setting: none.tools, settings: none, setup, paths: SYSTEM_PATHS, emit: () => {} }), undefined)
  await rm(setup.nameFile)
  const plain = settingsFor('')
  assert.equal(await toolsStep({ server: url, setting: plain.tools, settings: plain, setup, paths: SYSTEM_PATHS, emit: () => {} }), undefined)
  assert.throws(() => settingsFor('si.tools=bad/name'), /si\.tools/)
})
