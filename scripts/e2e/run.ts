// End-to-end test of the boot path (`make e2e-1vm`, `make e2e-3vm`): qemu VMs under TCG
// boot Debian's kernel with dist/initrd.img, get an address by DHCP on an emulated LAN,
// ask si-server (on the host, in the LAN's namespace) for their plan, install the image
// onto a blank virtio disk and power off. The host then checks every disk, and reports
// the timings and the bytes each VM got from its peers.
//
// usage: node --import tsx scripts/e2e/run.ts --vms N [--data-mib M] [--upload-limit RATE]
//        [--timeout SECONDS] [--keep]                   (root; qemu-system-x86_64)
import { mkdtemp, rm, stat, symlink, mkdir, open, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { option, switchOption } from '../../src/config/options.ts'
import { decimal, integer, rate } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'
import { describeError } from '../../src/errors.ts'
import { BUDGET_BYTES } from '../../initrd/build.ts'
import { buildTestRoot } from './test-image.ts'
import { createLan, destroyLan, endRun, vmMac, SERVER_IP, SUBNET_PREFIX, type Lan } from './lan.ts'
import { wget, waitForServer, SERVER_PORT, SERVER_URL } from './lan-http.ts'
import { Checks, writeReport, type VmReport } from './report.ts'
import { must, has, runIfMain, start, stop, stopOnSignals, type Running } from './proc.ts'
import { bootVm, awaitVm, blankDisk, consoleTimes, type VmSpec, type VmOutcome } from './vm.ts'
import { writePlans, IMAGE, DISK_BYTES, EXPECTED_PARTITIONS, INSTALL_WRITES, PLAN_MARKER } from './plans.ts'
import { checkDisk } from './check-disk.ts'
import type { NodeSummary } from '../../src/server/fleet.ts'

/** vm1's own override (si-server override add vm1): laid over the image through the swarm, checked on its disk. */
const HOST_OVERRIDE_NODE = 'vm1'
const HOST_OVERRIDE_FILE = 'etc/si-host-override'
const HOST_OVERRIDE_TEXT = 'laid over the image for vm1\n'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const DIST = join(ROOT, 'dist')
const PIECE_LENGTH = 256 * 1024
const TOO_SMALL_DISK_BYTES = 64 * 1024 * 1024
const MiB = 1024 * 1024
/** The one-VM run's static address (IPADDR=), outside the DHCP range. */
export const STATIC_IP = `${SUBNET_PREFIX}.50`
const REQUIRED_TOOLS = ['qemu-system-x86_64', 'ip', 'busybox', 'losetup', 'sfdisk', 'blkid', 'mount', 'e2fsck', 'xfs_repair', 'fsck.vfat', 'partx']

interface VmPlan { spec: VmSpec; node: string; marker?: string }

function log (msg: string): void { process.stdout.write(`e2e: ${msg}\n`) }

export function appendFor (node: string | undefined, opts: { vms: number; timeoutSeconds: number; aliases: boolean }): string {
  const common = ['console=ttyS0', 'panic=-1', 'si.on_error=poweroff', `si.timeout=${opts.timeoutSeconds}`, 'si.stall=120']
  if (opts.aliases) {
    // SystemImager's names, as migrating administrators will write them, a static address included.
    return [...common, `IPADDR=${STATIC_IP}`, 'NETMASK=255.255.255.0', `GATEWAY=${SERVER_IP}`, `IMAGESERVER=${SERVER_IP}`, `IMAGENAME=${IMAGE}`, 'BITTORRENT_SEED_WAIT=n', 'BITTORRENT_POLLING_TIME=1', `MONITOR_SERVER=${SERVER_IP}`, `MONITOR_PORT=${SERVER_PORT}`, ...(node !== undefined ? [`si.node=${node}`] : [])].join(' ')
  }
  // Swarm-aware seeding keeps finished VMs uploading to the slower ones.
  return [...common, `si.server=${SERVER_URL}`, 'si.seed_wait=swarm', 'si.seed_max=240', 'si.poll=1', ...(node !== undefined ? [`si.node=${node}`] : [])].join(' ')
}

async function isAllZero (file: string): Promise<boolean> {
  const fh = await open(file, 'r')
  try {
    const buf = Buffer.alloc(MiB)
    const size = (await fh.stat()).size
    for (let off = 0; off < size; off += MiB) {
      const { bytesRead } = await fh.read(buf, 0, MiB, off)
      if (!buf.subarray(0, bytesRead).every(b => b === 0)) return false
    }
    return true
  } finally { await fh.close() }
}

const E2E_OPTIONS = {
  vms: option({ flag: 'vms', arg: 'N', help: 'virtual machines on the emulated LAN', default: 1, parse: integer(1, 8) }),
  dataMib: option({ flag: 'data-mib', arg: 'M', help: 'size of the test image\'s data, MiB', default: 8, parse: decimal(1, 4096) }),
  uploadLimit: option({ flag: 'upload-limit', arg: 'RATE', help: 'cap on the server\'s upload', defaultText: '4mbit with several VMs, so pieces must also come from the peers; none with one', parse: rate }),
  timeout: option({ flag: 'timeout', arg: 'S', help: 'fail when the VMs are not done by then', defaultText: '420 for one VM, 900 for several', parse: decimal(10, 7200) }),
  keep: switchOption({ flag: 'keep', help: 'keep the work directory and the network for inspection' })
}
const USAGE = commandHelp(['node --import tsx scripts/e2e/run.ts --vms N [options]   (as root; make e2e runs it)'], E2E_OPTIONS)

async function main (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, E2E_OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  const vms = o.vms
  const dataBytes = o.dataMib * MiB
  const timeoutSeconds = o.timeout ?? (vms === 1 ? 420 : 900)
  // Slower than the VMs can take it: the pieces must also come from the peers.
  const uploadLimit = o.uploadLimit !== undefined ? `${Math.round(o.uploadLimit)}B` : (vms > 1 ? '4mbit' : undefined)
  const label = `e2e-${vms}vm`

  if (process.getuid?.() !== 0) throw new Error('needs root: network namespace, tap devices, loop devices')
  const missingTools = REQUIRED_TOOLS.filter(t => !has(t))
  if (missingTools.length > 0) throw new Error(`missing tools: ${missingTools.join(', ')} (see the APT packages in .ci/run)`)
  const kernel = join(DIST, 'vmlinuz')
  const initrd = join(DIST, 'initrd.img')
  for (const f of [kernel, initrd, join(DIST, 'si-server')]) {
    try { await stat(f) } catch { throw new Error(`${f} missing: run make initrd`) }
  }

  const checks = new Checks()
  const initrdBytes = (await stat(initrd)).size
  checks.add('initramfs within budget', initrdBytes <= BUDGET_BYTES, `${(initrdBytes / MiB).toFixed(2)} MiB of ${BUDGET_BYTES / MiB} MiB`)

  const workdir = await mkdtemp(join(tmpdir(), 'si-e2e-'))
  log(`work directory ${workdir}`)
  let lan: Lan | undefined
  let server: Running | undefined
  const offSignals = stopOnSignals()
  try {
    const source = join(workdir, 'source')
    await buildTestRoot(source, { dataBytes })
    const repo = join(workdir, 'repo')
    must([join(DIST, 'si-server'), 'image', 'add', IMAGE, '--from', source, '--repo', repo, '--piece-length', String(PIECE_LENGTH)])
    const hostOverride = join(workdir, 'override-vm1')
    await mkdir(join(hostOverride, 'etc'), { recursive: true })
    await writeFile(join(hostOverride, HOST_OVERRIDE_FILE), HOST_OVERRIDE_TEXT)
    must([join(DIST, 'si-server'), 'override', 'add', HOST_OVERRIDE_NODE, '--from', hostOverride, '--repo', repo])
    const boot = join(workdir, 'boot')
    await mkdir(boot)
    await symlink(kernel, join(boot, 'vmlinuz'))
    await symlink(initrd, join(boot, 'initrd.img'))

    const bad = vms === 1 // one more VM, booted after, with a disk too small for the plan
    const vmDefs = Array.from({ length: vms }, (_, i) => ({ node: vms === 1 ? 'vm1' : [`vm${i + 1}`, undefined, `rack-0${i + 1}`][i % 3], mac: vmMac(i) }))
    const markers = await writePlans(join(workdir, 'plans'), vmDefs)

    lan = await createLan(workdir, vms + (bad ? 1 : 0))
    server = start('si-server', [...lan.exec, join(DIST, 'si-server'), 'serve', '--repo', repo, '--plans', join(workdir, 'plans'), '--boot-dir', boot,
      '--listen', `${SERVER_IP}:${SERVER_PORT}`, '--peer-listen', `${SERVER_IP}:6881`, '--announce-interval', '5', ...(uploadLimit !== undefined ? ['--upload-limit', uploadLimit] : [])], join(workdir, 'server.log'))
    await waitForServer(lan, server)

    // PXE: what iPXE would fetch.
    const script = await wget(lan, '/boot/boot.ipxe')
    checks.add('server generates the iPXE script', script.includes(`kernel ${SERVER_URL}/boot/vmlinuz`) && script.includes(`si.server=${SERVER_URL}`), script.split('\n')[2] ?? '')
    await wget(lan, '/boot/initrd.img', join(workdir, 'initrd.served'))
    checks.add('server serves the initramfs', (await stat(join(workdir, 'initrd.served'))).size === initrdBytes)
    await rm(join(workdir, 'initrd.served'))

    const plans: VmPlan[] = []
    for (const [i, def] of vmDefs.entries()) {
      const disk = join(workdir, `vm${i + 1}.raw`)
      await blankDisk(disk, DISK_BYTES)
      plans.push({
        node: def.node ?? `mac-${def.mac.replace(/:/g, '')}`,
        marker: markers.get(i),
        spec: { name: `vm${i + 1}`, firmware: 'bios', boot: { pxe: 'direct', kernel, initrd, append: appendFor(def.node, { vms, timeoutSeconds, aliases: vms === 1 }) }, reboot: 'exit', disk, diskBytes: DISK_BYTES, tap: lan.taps[i], mac: def.mac, console: join(workdir, `vm${i + 1}.console`), exec: lan.exec }
      })
    }
    log(`booting ${vms} VM(s) under TCG${uploadLimit !== undefined ? `, server upload limited to ${uploadLimit}` : ''}`)
    const started = Date.now()
    const running = plans.map(p => bootVm(p.spec, join(workdir, `${p.spec.name}.qemu.log`)))
    const outcomes: VmOutcome[] = await Promise.all(plans.map((p, i) => awaitVm(p.spec, running[i], started, timeoutSeconds * 1000)))

    let badOutcome: VmOutcome | undefined
    let badDisk: string | undefined
    if (bad) {
      badDisk = join(workdir, 'small.raw')
      await blankDisk(badDisk, TOO_SMALL_DISK_BYTES)
      const append = appendFor('vm-small', { vms, timeoutSeconds, aliases: false }).replace('si.seed_wait=swarm', 'si.seed_wait=none')
      const spec: VmSpec = { name: 'vm-small', firmware: 'bios', boot: { pxe: 'direct', kernel, initrd, append }, reboot: 'exit', disk: badDisk, diskBytes: TOO_SMALL_DISK_BYTES, tap: lan.taps[vms], mac: vmMac(vms), console: join(workdir, 'vm-small.console'), exec: lan.exec }
      log('booting a VM whose disk is too small for the plan')
      const t0 = Date.now()
      badOutcome = await awaitVm(spec, bootVm(spec, join(workdir, 'vm-small.qemu.log')), t0, timeoutSeconds * 1000)
    }

    const fleet = (JSON.parse(await wget(lan, '/api/nodes')) as { nodes: NodeSummary[] }).nodes
    await stop(server)
    server = undefined
    await destroyLan(lan)
    lan = undefined

    const rows: string[] = []
    const vmReports: VmReport[] = []
    for (const [i, p] of plans.entries()) {
      const o = outcomes[i]
      const times = consoleTimes(o.console)
      const report = fleet.find(n => n.node === p.node)
      checks.add(`${p.spec.name} installed and powered off`, !o.timedOut && o.code === 0 && report?.step === 'installed',
        o.timedOut ? `timed out after ${timeoutSeconds} s` : `qemu exit ${o.code}, server sees ${report?.phase ?? 'nothing'}${report?.phase === 'failed' ? `: ${String(report.error?.code)} ${String(report.error?.message)}` : ''}`)
      const overridden = p.node === HOST_OVERRIDE_NODE
      const check = await checkDisk({
        disk: p.spec.disk,
        expected: EXPECTED_PARTITIONS,
        sourceRoot: source,
        allowed: overridden ? new Set([...INSTALL_WRITES, HOST_OVERRIDE_FILE]) : INSTALL_WRITES,
        read: ['etc/fstab', PLAN_MARKER, 'etc/hostname', ...(overridden ? [HOST_OVERRIDE_FILE] : [])],
        workdir
      })
      if (overridden) checks.add(`${p.spec.name} has its host override (through the swarm)`, check.files[HOST_OVERRIDE_FILE] === HOST_OVERRIDE_TEXT, JSON.stringify(check.files[HOST_OVERRIDE_FILE] ?? 'missing'))
      checks.add(`${p.spec.name} disk: GPT, vfat+swap+ext4+xfs, fstab by UUID, files identical to the image`, check.ok, check.problems.join('; '))
      const marker = check.files[PLAN_MARKER] ?? ''
      if (p.spec.boot.pxe === 'direct' && p.spec.boot.append.includes('IPADDR=')) {
        checks.add(`${p.spec.name} used its static address (IPADDR/NETMASK/GATEWAY), no DHCP`, o.console.includes(`network: eth0 ${STATIC_IP}/24 (static) router ${SERVER_IP}`) && !o.console.includes('si-init: DHCP on'), /si-init: network: .*/.exec(o.console)?.[0] ?? 'no network line')
      }
      checks.add(`${p.spec.name} followed the ${p.marker ?? '?'} plan`, marker.startsWith(`plan=${p.marker ?? '?'} node=${p.node} `) && check.files['etc/hostname'] === `${p.node}\n`, marker.trim())
      vmReports.push({ node: p.node, firmware: p.spec.firmware, pxe: p.spec.boot.pxe, bootedInstalled: false, secondsToInstalled: report?.step === 'installed' ? o.wallSeconds : null, secondsToBooted: null })
      const fromServer = report?.bytesFromServer ?? 0
      const fromPeers = report?.bytesFromPeers ?? 0
      rows.push([p.spec.name, p.node, times.initSeconds, times.agentStartSeconds, times.firstRequestSeconds, times.installedSeconds, o.wallSeconds, fromServer + fromPeers, fromServer, fromPeers, report?.uploaded ?? 0]
        .map(v => typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(1)) : String(v ?? '-')).join('\t'))
      if (o.code !== 0 || report?.step !== 'installed') process.stdout.write(`---- ${p.spec.name} console (last lines) ----\n${o.console.split('\n').slice(-40).join('\n')}\n`)
    }
    if (vms > 1) {
      const fromPeers = plans.map(p => fleet.find(n => n.node === p.node)?.bytesFromPeers ?? 0)
      checks.add('VMs exchanged pieces with each other', fromPeers.reduce((a, b) => a + b, 0) > 0, `bytes from peers per VM: ${fromPeers.join(', ')}`)
    }
    if (badOutcome !== undefined && badDisk !== undefined) {
      const report = fleet.find(n => n.node === 'vm-small')
      checks.add('a disk too small fails clearly, reported, disk untouched, VM powered off',
        !badOutcome.timedOut && badOutcome.code === 0 && report?.phase === 'failed' && report.error?.code === 'ERR_DISK_TOO_SMALL' && /too small/.test(badOutcome.console) && await isAllZero(badDisk),
        `server: ${report?.phase ?? 'nothing'} ${String(report?.error?.code ?? '')}; console: ${/si-agent: error: .*/.exec(badOutcome.console)?.[0] ?? 'no error line'}`)
    }

    process.stdout.write(`\n${label}: seconds since kernel start (TCG), bytes\n`)
    process.stdout.write(['vm', 'node', 'init', 'agent', '1st-request', 'installed', 'wall', 'downloaded', 'from-server', 'from-peers', 'uploaded'].join('\t') + '\n' + rows.join('\n') + '\n')
    await writeReport(join(DIST, `${label}-report.json`), checks, vmReports, { fleet, initrdBytes, uploadLimit })
    const failed = checks.failed
    process.stdout.write(`\n${label}: ${checks.list.length - failed} passed, ${failed} failed\n`)
    return failed === 0 ? 0 : 1
  } finally {
    offSignals()
    await endRun({ lan, workdir, keep: o.keep, log })
  }
}

// Imported by the tests (to type-check and test its parts), run by make.
runIfMain(import.meta.url, 'e2e', main)
