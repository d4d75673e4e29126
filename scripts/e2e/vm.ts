// One qemu VM under TCG (KVM hangs on these machines): Debian's kernel with our
// initramfs, one blank virtio disk, one virtio NIC on a tap of the emulated LAN, the
// serial console in a file. It powers itself off when done (-no-reboot turns a reboot
// into an exit too).
import { open, readFile } from 'node:fs/promises'
import { start, waitExit, type Running } from './proc.ts'

export const VM_MEMORY_MIB = 768

export interface VmSpec {
  name: string
  kernel: string
  initrd: string
  disk: string
  diskBytes: number
  tap: string
  mac: string
  append: string
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
  return [
    'qemu-system-x86_64',
    '-accel', 'tcg',
    '-m', String(VM_MEMORY_MIB),
    '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
    '-no-reboot',
    '-serial', `file:${vm.console}`,
    '-kernel', vm.kernel,
    '-initrd', vm.initrd,
    '-append', vm.append,
    '-drive', `file=${vm.disk},format=raw,if=virtio,cache=unsafe`,
    '-netdev', `tap,id=n0,ifname=${vm.tap},script=no,downscript=no`,
    '-device', `virtio-net-pci,netdev=n0,mac=${vm.mac}`
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
