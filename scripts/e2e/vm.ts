// One qemu VM under TCG (KVM hangs on these machines): one blank virtio disk, one
// virtio NIC on a tap of the emulated LAN, the serial console in a file. It boots either
// Debian's kernel with our initramfs directly (-kernel/-initrd), or from its firmware
// (SeaBIOS or OVMF's UEFI) like a real node: the disk first, so a blank disk falls
// through to the NIC's iPXE ROM (Debian's ipxe-qemu) and an installed one boots itself.
// It powers itself off when done; with `reboot: 'exit'`, -no-reboot turns a reboot into
// an exit too.
import { open, readFile } from 'node:fs/promises'
import { start, waitExit, type Running } from './proc.ts'

export const VM_MEMORY_MIB = 768
/** OVMF as one image (Debian's ovmf): no persistent variables, which --removable grub does without. */
export const OVMF_FIRMWARE = '/usr/share/qemu/OVMF.fd'

export type Firmware = 'bios' | 'uefi'

export type VmBoot =
  | { pxe: 'direct'; kernel: string; initrd: string; append: string }
  /** the NIC's iPXE ROM: DHCP, then what the DHCP server names (TFTP, HTTP) */
  | { pxe: 'rom' }

export interface VmSpec {
  name: string
  firmware: Firmware
  boot: VmBoot
  /** what a reboot does: end qemu, or reset the machine (firmware, then the disk) */
  reboot: 'exit' | 'reset'
  memoryMib?: number
  disk: string
  diskBytes: number
  tap: string
  mac: string
  console: string
  /** argv prefix that runs qemu inside the LAN's namespace */
  exec: string[]
}

export interface VmOutcome { name: string; code: number | null; timedOut: boolean; wallSeconds: number; console: string }

export async function blankDisk (path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w')
  await fh.truncate(bytes) // sparse: zeros cost nothing until written
  await fh.close()
}

export function qemuArgs (vm: VmSpec): string[] {
  const boot = vm.boot
  return [
    'qemu-system-x86_64',
    '-accel', 'tcg',
    '-m', String(vm.memoryMib ?? VM_MEMORY_MIB),
    '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
    ...(vm.reboot === 'exit' ? ['-no-reboot'] : []),
    ...(vm.firmware === 'uefi' ? ['-bios', OVMF_FIRMWARE] : []),
    '-serial', `file:${vm.console}`,
    ...(boot.pxe === 'direct' ? ['-kernel', boot.kernel, '-initrd', boot.initrd, '-append', boot.append] : []),
    '-drive', `file=${vm.disk},format=raw,if=none,id=d0,cache=unsafe`,
    '-device', `virtio-blk-pci,drive=d0${boot.pxe === 'rom' ? ',bootindex=1' : ''}`,
    '-netdev', `tap,id=n0,ifname=${vm.tap},script=no,downscript=no`,
    '-device', `virtio-net-pci,netdev=n0,mac=${vm.mac}${boot.pxe === 'rom' ? ',bootindex=2' : ''}`
  ]
}

export function bootVm (vm: VmSpec, logFile: string): Running {
  return start(vm.name, [...vm.exec, ...qemuArgs(vm)], logFile)
}

export async function awaitVm (vm: VmSpec, running: Running, startedAt: number, timeoutMs: number): Promise<VmOutcome> {
  const { code, timedOut } = await waitExit(running, timeoutMs)
  let console = ''
  try { console = await readFile(vm.console, 'utf8') } catch { /* never started */ }
  return { name: vm.name, code, timedOut, wallSeconds: (Date.now() - startedAt) / 1000, console }
}

/** Figures the agent and /init print on the console. */
export function consoleTimes (console: string): { initSeconds?: number; agentStartSeconds?: number; firstRequestSeconds?: number; installedSeconds?: number } {
  const num = (re: RegExp): number | undefined => { const m = re.exec(console); return m === null ? undefined : Number(m[1]) }
  return {
    initSeconds: num(/^\[\s*([\d.]+)\] si-init: swarmimager initramfs/m),
    agentStartSeconds: num(/^\[\s*([\d.]+)\] si-init: starting si-agent install/m),
    firstRequestSeconds: num(/plan of .*?, ([\d.]+) s after kernel start/),
    installedSeconds: num(/si-agent: installed .*?, ([\d.]+) s after kernel start/)
  }
}
