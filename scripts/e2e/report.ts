// What every e2e run reports: its checks (printed as they are made) and, per VM, how it
// booted and how far it got, written to dist/e2e-*-report.json next to the checks.
import { writeFile } from 'node:fs/promises'
import type { Firmware } from './vm.ts'

export interface Check { name: string; ok: boolean; detail: string }

export class Checks {
  readonly list: Check[] = []
  add (name: string, ok: boolean, detail = ''): void {
    this.list.push({ name, ok, detail })
    process.stdout.write(`${ok ? 'PASS' : 'FAIL'}  ${name}${detail !== '' ? `: ${detail}` : ''}\n`)
  }

  get failed (): number { return this.list.filter(c => !c.ok).length }
}

/** One VM's outcome: seconds count from its power-on (qemu's start), as the host saw them. */
export interface VmReport {
  node: string
  firmware: Firmware
  /** rom: the NIC's iPXE ROM from the firmware; direct: qemu's -kernel/-initrd */
  pxe: 'rom' | 'direct'
  /** the installed system came up from its own disk and reported "booted" */
  bootedInstalled: boolean
  secondsToInstalled: number | null
  secondsToBooted: number | null
}

export async function writeReport (file: string, checks: Checks, vms: VmReport[], rest: Record<string, unknown>): Promise<void> {
  await writeFile(file, JSON.stringify({ checks: checks.list, vms, ...rest }, null, 2))
}
