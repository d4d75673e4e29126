// End-to-end test from the firmware to the installed system running (`make e2e-boot`):
// qemu VMs under TCG with blank disks boot from their firmware (SeaBIOS, or OVMF's
// UEFI), whose iPXE ROM gets DHCP and a TFTP script from dnsmasq and chain-loads
// si-server's boot.ipxe over HTTP; the installer puts a debootstrap'd Debian bookworm
// (scripts/e2e/bootable-image.ts) on the disk with grub for the firmware it booted with;
// the VM then reboots from its own disk (or kexecs the installed kernel), reaches
// systemd, and the installed system's first-boot service reports "booted" to the
// server. The host follows every node in /api/nodes and reports, per VM, the seconds
// from power-on to installed and to booted (dist/e2e-boot-report.json).
//
// usage: node --import tsx scripts/e2e/boot.ts [--only bios,uefi,kexec] [--timeout S] [--keep]
//        (root; qemu-system-x86_64, dnsmasq, debootstrap, Debian's ipxe-qemu and ovmf)
import { mkdtemp, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { listOption, option, switchOption } from '../../src/config/options.ts'
import { decimal, nonEmpty } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'
import { describeError } from '../../src/errors.ts'
import type { NodeReport } from '../../src/formats/node-report.ts'
import { bootableTree } from './bootable-image.ts'
import { createLan, destroyLan, endRun, vmMac, SERVER_IP, type Lan } from './lan.ts'
import { wget, waitForServer, SERVER_PORT, SERVER_URL } from './lan-http.ts'
import { has, must, runIfMain, start, stop, stopOnSignals, type Running } from './proc.ts'
import { blankDisk, bootVm, OVMF_FIRMWARE, type Firmware, type VmSpec } from './vm.ts'
import { bootPlan, BOOT_DISK_BYTES, BOOT_IMAGE } from './plans.ts'
import { Checks, writeReport, type VmReport } from './report.ts'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const DIST = join(ROOT, 'dist')
const VM_MEMORY_MIB = 1024
const POLL_MS = 3_000
const IMAGE_ADD_TIMEOUT_MS = 15 * 60_000
const DEFAULT_TIMEOUT_S = 2400
const SEED_MAX_S = 60
const MiB = 1024 * 1024
const REQUIRED_TOOLS = ['qemu-system-x86_64', 'ip', 'dnsmasq', 'debootstrap', 'chroot', 'modprobe', 'depmod']

interface BootVm { name: string; firmware: Firmware; finish: 'reboot' | 'kexec' }

/** BIOS and UEFI each reboot into their disk; one more VM kexecs into the installed kernel. */
export const BOOT_VMS: Record<string, BootVm> = {
  bios: { name: 'vm-bios', firmware: 'bios', finish: 'reboot' },
  uefi: { name: 'vm-uefi', firmware: 'uefi', finish: 'reboot' },
  kexec: { name: 'vm-kexec', firmware: 'bios', finish: 'kexec' }
}

/** What the host saw of one VM, in seconds since its power-on. */
interface Watch {
  vm: BootVm
  spec: VmSpec
  running: Running
  startedAt: number
  /** first time each phase showed in /api/nodes */
  phases: Map<string, number>
  installed?: Record<string, unknown>
  booted?: Record<string, unknown>
  failed?: Record<string, unknown>
  exited?: number
}

function log (msg: string): void { process.stdout.write(`e2e-boot: ${msg}\n`) }

/** The installer's kernel arguments, for every node: si-server writes them into boot.ipxe. */
export function bootArgs (timeoutSeconds: number): string {
  return ['console=ttyS0,115200n8', 'panic=-1', 'si.on_error=poweroff', `si.timeout=${timeoutSeconds}`, 'si.stall=120',
    'si.seed_wait=swarm', `si.seed_max=${SEED_MAX_S}`, 'si.poll=1'].join(' ')
}

const BOOT_OPTIONS = {
  only: listOption({ flag: 'only', arg: 'VM,...', help: `run only these of ${Object.keys(BOOT_VMS).join(', ')}`, parseItem: nonEmpty('a VM name') }),
  timeout: option({ flag: 'timeout', arg: 'S', help: 'fail the VMs not booted by then', default: DEFAULT_TIMEOUT_S, parse: decimal(60, 7200) }),
  keep: switchOption({ flag: 'keep', help: 'keep the work directory for inspection' })
}
const USAGE = commandHelp(['node --import tsx scripts/e2e/boot.ts [options]   (as root; make e2e-boot runs it)'], BOOT_OPTIONS)

function since (w: Watch, at = Date.now()): number { return Math.round((at - w.startedAt) / 100) / 10 }

/** A node as /api/nodes lists it (src/server/fleet.ts NodeSummary), the fields read here. */
type FleetRow = Pick<NodeReport, 'phase' | 'step' | 'error' | 'bytesFromServer' | 'bytesFromPeers' | 'system'> & { node: string }

/** What the agent's installed report and the first-boot report say of their systems (typed fields of the report). */
function factsOf (r: FleetRow): Record<string, unknown> {
  const fromServer = r.bytesFromServer ?? 0
  return {
    firmware: r.system?.firmware,
    finish: r.system?.finish,
    kernel: r.system?.kernel,
    uptimeSeconds: r.system?.uptimeSeconds,
    downloaded: fromServer + (r.bytesFromPeers ?? 0),
    downloadedFromServer: fromServer,
    code: r.error?.code,
    message: r.error?.message
  }
}

async function poll (lan: Lan, watches: Watch[]): Promise<void> {
  let fleet: FleetRow[]
  try { fleet = (JSON.parse(await wget(lan, '/api/nodes')) as { nodes: FleetRow[] }).nodes } catch (err) { log(`poll: ${describeError(err)}`); return }
  for (const w of watches) {
    const r = fleet.find(n => n.node === w.vm.name)
    if (r === undefined) continue
    // The installer's end is its step (phase done); the installed system's report is phase
    // booted (the node's last step stays 'installed' beside it).
    const phase = r.phase !== 'booted' && r.phase !== 'failed' && r.step === 'installed' ? 'installed' : r.phase
    if (!w.phases.has(phase)) {
      w.phases.set(phase, since(w))
      log(`${w.vm.name}: ${phase} at ${since(w)} s`)
    }
    if (phase === 'installed' && w.installed === undefined) w.installed = factsOf(r)
    if (phase === 'booted' && w.booted === undefined) w.booted = factsOf(r)
    if (phase === 'failed' && w.failed === undefined) w.failed = factsOf(r)
  }
}

function done (w: Watch): boolean { return w.booted !== undefined || w.failed !== undefined || w.exited !== undefined }

/** When the agent was first seen: its first report of any kind. */
function firstPhase (w: Watch): number | undefined { return w.phases.size === 0 ? undefined : Math.min(...w.phases.values()) }

function num (v: unknown): number | undefined { return typeof v === 'number' ? v : undefined }

async function main (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, BOOT_OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  const chosen = o.only.length > 0 ? o.only : Object.keys(BOOT_VMS)
  const unknown = chosen.filter(k => BOOT_VMS[k] === undefined)
  if (unknown.length > 0) throw new Error(`--only: unknown VM ${unknown.join(', ')} (expected ${Object.keys(BOOT_VMS).join(', ')})`)
  const vms = chosen.map(k => BOOT_VMS[k])
  const timeoutSeconds = o.timeout

  if (process.getuid?.() !== 0) throw new Error('needs root: network namespace, tap devices, debootstrap')
  const missingTools = REQUIRED_TOOLS.filter(t => !has(t))
  if (missingTools.length > 0) throw new Error(`missing tools: ${missingTools.join(', ')} (see the APT packages in .ci/run)`)
  if (vms.some(v => v.firmware === 'uefi')) {
    try { await stat(OVMF_FIRMWARE) } catch { throw new Error(`${OVMF_FIRMWARE} missing: apt-get install ovmf`) }
  }
  const kernel = join(DIST, 'vmlinuz')
  const initrd = join(DIST, 'initrd.img')
  for (const f of [kernel, initrd, join(DIST, 'si-server')]) {
    try { await stat(f) } catch { throw new Error(`${f} missing: run make initrd`) }
  }

  const checks = new Checks()
  const t0 = Date.now()
  const tree = await bootableTree(log)
  const treeSeconds = (Date.now() - t0) / 1000
  const treeBytes = Number(must(['du', '-sb', tree.dir]).split('\t')[0])
  log(`bootable image ${tree.dir}: ${(treeBytes / MiB).toFixed(0)} MiB, ${tree.cached ? 'cached' : `made in ${treeSeconds.toFixed(0)} s`}`)

  const workdir = await mkdtemp(join(tmpdir(), 'sb-e2e-boot-'))
  log(`work directory ${workdir}`)
  let lan: Lan | undefined
  let server: Running | undefined
  const offSignals = stopOnSignals()
  try {
    const repo = join(workdir, 'repo')
    const t1 = Date.now()
    must([join(DIST, 'si-server'), 'image', 'add', BOOT_IMAGE, '--from', tree.dir, '--repo', repo], undefined, IMAGE_ADD_TIMEOUT_MS)
    const payload = JSON.parse(must([join(DIST, 'si-server'), 'image', 'list', '--repo', repo, '--json'])) as Array<{ size: number; entries: number }>
    log(`image add ${BOOT_IMAGE}: ${((Date.now() - t1) / 1000).toFixed(0)} s`)
    const boot = join(workdir, 'boot')
    await mkdir(boot)
    await symlink(kernel, join(boot, 'vmlinuz'))
    await symlink(initrd, join(boot, 'initrd.img'))
    const plans = join(workdir, 'plans')
    await mkdir(join(plans, 'hosts'), { recursive: true })
    await writeFile(join(plans, 'default.json'), JSON.stringify(bootPlan('reboot'), null, 2))
    for (const vm of vms.filter(v => v.finish === 'kexec')) await writeFile(join(plans, 'hosts', `${vm.name}.json`), JSON.stringify(bootPlan('kexec'), null, 2))

    const macs = vms.map((_, i) => vmMac(i))
    lan = await createLan(workdir, vms.length, { chainUrl: `${SERVER_URL}/boot/boot.ipxe`, hosts: vms.map((v, i) => ({ mac: macs[i], name: v.name })) })
    server = start('si-server', [...lan.exec, join(DIST, 'si-server'), 'serve', '--repo', repo, '--plans', plans, '--boot-dir', boot,
      '--listen', `${SERVER_IP}:${SERVER_PORT}`, '--peer-listen', `${SERVER_IP}:6881`, '--announce-interval', '5', '--boot-args', bootArgs(timeoutSeconds)], join(workdir, 'server.log'))
    await waitForServer(lan, server)
    const script = await wget(lan, '/boot/boot.ipxe')
    checks.add('server generates the iPXE script with the installer\'s arguments', script.includes(`kernel ${SERVER_URL}/boot/vmlinuz`) && script.includes('si.seed_wait=swarm'), script.split('\n')[2] ?? '')

    log(`powering on ${vms.map(v => `${v.name} (${v.firmware}, finish ${v.finish})`).join(', ')} under TCG`)
    const watches: Watch[] = []
    for (const [i, vm] of vms.entries()) {
      const disk = join(workdir, `${vm.name}.raw`)
      await blankDisk(disk, BOOT_DISK_BYTES)
      const spec: VmSpec = { name: vm.name, firmware: vm.firmware, boot: { pxe: 'rom' }, reboot: 'reset', memoryMib: VM_MEMORY_MIB, disk, diskBytes: BOOT_DISK_BYTES, tap: lan.taps[i], mac: macs[i], console: join(workdir, `${vm.name}.console`), exec: lan.exec }
      const w: Watch = { vm, spec, running: bootVm(spec, join(workdir, `${vm.name}.qemu.log`)), startedAt: Date.now(), phases: new Map() }
      void w.running.exited.then(r => { w.exited = r.code ?? -1 })
      watches.push(w)
    }
    const deadline = Date.now() + timeoutSeconds * 1000
    while (!watches.every(done) && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, POLL_MS))
      await poll(lan, watches)
    }
    const endedAt = Date.now()
    await Promise.all(watches.map(w => stop(w.running)))
    const status = JSON.parse(await wget(lan, '/api/status')) as Record<string, unknown>
    const fleet = JSON.parse(await wget(lan, '/api/nodes')) as unknown
    await stop(server)
    server = undefined
    const dnsmasqLog = await readFile(join(workdir, 'dnsmasq.log'), 'utf8').catch(() => '')
    await destroyLan(lan)
    lan = undefined

    const reports: VmReport[] = []
    const rows: string[] = []
    for (const w of watches) {
      const { vm } = w
      const consoleText = await readFile(w.spec.console, 'utf8').catch(() => '')
      const ip = new RegExp(`DHCPACK\\(\\S+\\) (\\S+) ${w.spec.mac} ${vm.name}`, 'i').exec(dnsmasqLog)?.[1]
      const tftp = ip !== undefined && new RegExp(`sent \\S+ to ${ip.replace(/\./g, '\\.')}\\b`).test(dnsmasqLog)
      checks.add(`${vm.name}: ${vm.firmware} firmware's ROM got DHCP and the TFTP chain script`, ip !== undefined && tftp, ip !== undefined ? `address ${ip}${tftp ? '' : ', no TFTP transfer logged'}` : 'no DHCPACK for its MAC in the dnsmasq log')
      const ev = w.installed ?? {}
      const state = w.failed !== undefined ? `failed: ${String(w.failed.code)} ${String(w.failed.message)}` : w.exited !== undefined ? `qemu exited (${w.exited})` : done(w) ? '' : `not done after ${timeoutSeconds} s`
      checks.add(`${vm.name}: installed (the agent saw ${vm.firmware} firmware, finish ${vm.finish})`, w.installed !== undefined && ev.firmware === vm.firmware && ev.finish === vm.finish,
        w.installed !== undefined ? `firmware ${String(ev.firmware)}, finish ${String(ev.finish)}, ${String(w.phases.get('installed'))} s` : state)
      const bev = w.booted ?? {}
      checks.add(`${vm.name}: the installed system booted${vm.finish === 'kexec' ? ' (kexec)' : ` from its disk (${vm.firmware === 'uefi' ? 'UEFI' : 'BIOS grub'})`} and reported booted`,
        w.booted !== undefined && bev.firmware === vm.firmware,
        w.booted !== undefined ? `kernel ${String(bev.kernel)}, firmware ${String(bev.firmware)}, up ${String(bev.uptimeSeconds)} s when it reported, ${String(w.phases.get('booted'))} s after power-on` : state || 'no report')
      reports.push({ node: vm.name, firmware: vm.firmware, pxe: 'rom', bootedInstalled: w.booted !== undefined, secondsToInstalled: w.phases.get('installed') ?? null, secondsToBooted: w.phases.get('booted') ?? null })
      const downloaded = num(ev.downloaded) ?? 0
      const fromServer = num(ev.downloadedFromServer) ?? 0
      rows.push([vm.name, vm.firmware, vm.finish, firstPhase(w), w.phases.get('installed'), num(ev.uptimeSeconds), w.phases.get('booted'), num(bev.uptimeSeconds), downloaded, downloaded - fromServer]
        .map(v => v === undefined ? '-' : String(v)).join('\t'))
      if (w.booted === undefined) process.stdout.write(`---- ${vm.name} console (last lines) ----\n${consoleText.split('\n').slice(-40).join('\n')}\n`)
    }
    const initrdBytes = (await stat(initrd)).size
    const kernelBytes = (await stat(kernel)).size
    const figures = {
      vms: vms.length,
      imageTreeBytes: treeBytes,
      imagePayloadBytes: payload[0]?.size,
      imageEntries: payload[0]?.entries,
      initrdBytes,
      kernelBytes,
      bootBytesByUnicast: vms.length * (initrdBytes + kernelBytes),
      serverStatus: status,
      wallSeconds: (endedAt - watches[0].startedAt) / 1000
    }
    process.stdout.write('\ne2e-boot: seconds since power-on (host clock, TCG); uptime = the node\'s own kernel clock; bytes\n')
    process.stdout.write(['vm', 'firmware', 'finish', 'agent-up', 'installed', 'uptime@inst', 'booted', 'uptime@boot', 'downloaded', 'from-peers'].join('\t') + '\n' + rows.join('\n') + '\n')
    process.stdout.write(`boot files by unicast: ${vms.length} x (initramfs ${(initrdBytes / MiB).toFixed(1)} MiB + kernel ${(kernelBytes / MiB).toFixed(1)} MiB) = ${(figures.bootBytesByUnicast / MiB).toFixed(1)} MiB; server sent ${(Number(status.serverBytesSent ?? 0) / MiB).toFixed(1)} MiB of image payload\n`)
    await writeReport(join(DIST, 'e2e-boot-report.json'), checks, reports, { figures, fleet, timelines: watches.map(w => ({ node: w.vm.name, phases: Object.fromEntries(w.phases) })) })
    process.stdout.write(`\ne2e-boot: ${checks.list.length - checks.failed} passed, ${checks.failed} failed\n`)
    return checks.failed === 0 ? 0 : 1
  } finally {
    offSignals()
    await endRun({ lan, workdir, keep: o.keep, log })
  }
}

runIfMain(import.meta.url, 'e2e-boot', main)
