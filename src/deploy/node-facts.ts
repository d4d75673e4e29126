// Who this node is and what it is made of, for the fleet view: SystemImager's si_monitor
// sent MAC, IP, host, CPU and memory; we add the disks, since a node whose disk is too
// small or missing is a common reason an install fails.
import { readdirSync, readFileSync } from 'node:fs'
import { cpus, hostname, networkInterfaces, totalmem } from 'node:os'
import { REPORT_LIMITS, clip, type HardwareSummary, type NodeIdentity } from '../formats/node-report.ts'

const NO_MAC = '00:00:00:00:00:00'
const SYS_BLOCK = '/sys/block'
/** Devices that are not disks a plan installs on. */
const VIRTUAL_DISK = /^(loop|ram|zram|dm-|md|sr|nbd)/
const SECTOR_BYTES = 512

export function nodeIdentity (): NodeIdentity {
  const macs = new Set<string>()
  const addresses: string[] = []
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal) continue
      if (a.mac !== NO_MAC) macs.add(a.mac.toLowerCase())
      if (a.family === 'IPv4' || !a.address.startsWith('fe80')) addresses.push(a.address)
    }
  }
  return {
    hostname: clip(hostname(), 255),
    macs: [...macs].sort().slice(0, REPORT_LIMITS.listItems),
    addresses: addresses.slice(0, REPORT_LIMITS.listItems)
  }
}

/** Whole disks and their sizes, from /sys/block (none where it cannot be read). */
export function localDisks (sysBlock = SYS_BLOCK): HardwareSummary['disks'] {
  let names: string[]
  try { names = readdirSync(sysBlock) } catch { return [] }
  const disks: HardwareSummary['disks'] = []
  for (const name of names.filter(n => !VIRTUAL_DISK.test(n)).sort()) {
    try {
      const sectors = Number(readFileSync(`${sysBlock}/${name}/size`, 'utf8').trim())
      if (sectors > 0) disks.push({ name, bytes: sectors * SECTOR_BYTES })
    } catch { /* gone meanwhile */ }
  }
  return disks.slice(0, REPORT_LIMITS.listItems)
}

export function hardwareSummary (): HardwareSummary {
  const cpuList = cpus()
  const model = cpuList[0]?.model.trim()
  return {
    cpus: cpuList.length,
    ...(model !== undefined && model !== '' ? { cpuModel: clip(model) } : {}),
    memoryBytes: totalmem(),
    disks: localDisks()
  }
}
