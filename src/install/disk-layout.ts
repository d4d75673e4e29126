// From a plan's disk layout and a real disk's size to exact partitions (start and size
// in sectors, 1 MiB aligned), and the sfdisk script that writes them. Pure arithmetic:
// every size check happens here, before anything touches the disk.
import { SiError } from '../errors.ts'
import { MIN_FS_BYTES, type DiskSpec, type PartitionSpec } from '../formats/plan.ts'

export const ALIGN_BYTES = 1024 * 1024
/** GPT: protective MBR + header at the start, header copy at the end, 128 entries of 128 bytes. */
const GPT_ENTRIES_BYTES = 128 * 128
const MiB = 1024 * 1024

export interface PlacedPartition {
  number: number
  device: string
  startSector: number
  sectors: number
  bytes: number
  spec: PartitionSpec
}

export interface DiskLayout {
  device: string
  sectorSize: number
  partitions: PlacedPartition[]
}

/** /dev/vda -> /dev/vda1, /dev/nvme0n1 -> /dev/nvme0n1p1 (a name ending in a digit takes "p"). */
export function partitionDevice (disk: string, number: number): string {
  return /\d$/.test(disk) ? `${disk}p${number}` : `${disk}${number}`
}

export function mib (bytes: number): string {
  const m = bytes / MiB
  return Number.isInteger(m) ? `${m} MiB` : `${m.toFixed(1)} MiB`
}

function alignUp (n: number, to: number): number { return Math.ceil(n / to) * to }
function alignDown (n: number, to: number): number { return Math.floor(n / to) * to }

/** The byte range partitions may use on a GPT disk of this size. */
export function usableRange (diskBytes: number, sectorSize: number): { start: number; end: number } {
  const entriesSectors = Math.ceil(GPT_ENTRIES_BYTES / sectorSize)
  const firstUsable = (2 + entriesSectors) * sectorSize
  const lastUsableEnd = diskBytes - (1 + entriesSectors) * sectorSize
  return { start: alignUp(firstUsable, ALIGN_BYTES), end: alignDown(lastUsableEnd, ALIGN_BYTES) }
}

function describe (p: PartitionSpec, i: number): string {
  return p.name ?? p.mount ?? `partition ${i + 1}`
}

/** Throws ERR_DISK_TOO_SMALL, naming what the layout needs, when it cannot fit. */
export function placePartitions (spec: DiskSpec, device: string, diskBytes: number, sectorSize: number): DiskLayout {
  const { start, end } = usableRange(diskBytes, sectorSize)
  const usable = Math.max(0, end - start)
  const sizes = spec.partitions.map(p => {
    if (p.size.kind === 'bytes') return alignUp(p.size.bytes, ALIGN_BYTES)
    if (p.size.kind === 'percent') return Math.max(ALIGN_BYTES, alignDown(usable * p.size.percent / 100, ALIGN_BYTES))
    return 0
  })
  const fixed = sizes.reduce((a, b) => a + b, 0)
  const restIndex = spec.partitions.findIndex(p => p.size.kind === 'rest')
  const restMin = restIndex >= 0 ? alignUp(MIN_FS_BYTES[spec.partitions[restIndex].fs], ALIGN_BYTES) : 0
  if (restIndex >= 0) sizes[restIndex] = usable - fixed
  const needed = fixed + restMin
  if (needed > usable) {
    const parts = spec.partitions.map((p, i) => `${describe(p, i)} ${p.size.kind === 'rest' ? `rest (at least ${mib(restMin)})` : mib(sizes[i])}`)
    throw new SiError('ERR_DISK_TOO_SMALL', `disk ${device} (${mib(diskBytes)}) is too small for the layout: it needs ${mib(needed + diskBytes - usable)} (${parts.join(', ')}, plus the partition table and alignment); nothing was written`)
  }
  spec.partitions.forEach((p, i) => {
    if (sizes[i] < MIN_FS_BYTES[p.fs]) {
      throw new SiError('ERR_DISK_TOO_SMALL', `disk ${device} (${mib(diskBytes)}): ${describe(p, i)} would get ${mib(sizes[i])}, less than the ${mib(MIN_FS_BYTES[p.fs])} ${p.fs} needs; nothing was written`)
    }
  })
  let offset = start
  const partitions = spec.partitions.map((p, i): PlacedPartition => {
    const placed = { number: i + 1, device: partitionDevice(device, i + 1), startSector: offset / sectorSize, sectors: sizes[i] / sectorSize, bytes: sizes[i], spec: p }
    offset += sizes[i]
    return placed
  })
  return { device, sectorSize, partitions }
}

/** sfdisk's input for the layout: a new GPT, every partition at an explicit place. */
export function sfdiskScript (layout: DiskLayout): string {
  const lines = ['label: gpt', 'unit: sectors', '']
  for (const p of layout.partitions) {
    const name = p.spec.name ?? p.spec.label
    lines.push(`start=${p.startSector}, size=${p.sectors}, type=${p.spec.type}${name !== undefined ? `, name="${name}"` : ''}`)
  }
  return lines.join('\n') + '\n'
}
