// The node's disks as the kernel sees them (/sys/class/block): which one a plan's
// device means, its size, and whether anything uses it. A disk that is mounted, used
// as swap or held by another device (LVM, RAID) is never partitioned: that refusal is
// what keeps a mistaken `si-agent install` from wiping a running system.
import { readdir, readFile, realpath, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { SiError } from '../errors.ts'

const SECTOR_UNIT = 512 // /sys/class/block/*/size counts 512-byte units whatever the disk
const DISK_POLL_MS = 200
/** Whole disks an installer may pick by itself, in the order it prefers them. */
const AUTO_DISK_NAMES = [/^vd[a-z]+$/, /^sd[a-z]+$/, /^nvme\d+n\d+$/, /^xvd[a-z]+$/, /^hd[a-z]+$/, /^mmcblk\d+$/]

export interface DiskInfo {
  device: string
  name: string
  bytes: number
  sectorSize: number
}

export interface SystemPaths { sys: string; proc: string; dev: string }
export const SYSTEM_PATHS: SystemPaths = { sys: '/sys', proc: '/proc', dev: '/dev' }

async function readText (path: string): Promise<string | undefined> {
  try { return (await readFile(path, 'utf8')).trim() } catch { return undefined }
}

async function isWholeDisk (paths: SystemPaths, name: string): Promise<boolean> {
  const dir = join(paths.sys, 'class/block', name)
  if (await readText(join(dir, 'size')) === undefined) return false
  return await readText(join(dir, 'partition')) === undefined
}

async function listDisks (paths: SystemPaths): Promise<string[]> {
  let names: string[] = []
  try { names = await readdir(join(paths.sys, 'class/block')) } catch { /* no sysfs */ }
  const disks: string[] = []
  for (const n of names) if (await isWholeDisk(paths, n)) disks.push(n)
  return disks.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
}

/**
 * Waits (bounded) until the kernel shows a disk an installer would pick (loop devices do
 * not count): drivers probe some buses (SCSI, NVMe) in the background.
 */
export async function waitForDisks (paths: SystemPaths, ms: number, pollMs = DISK_POLL_MS): Promise<string[]> {
  const deadline = Date.now() + ms
  for (;;) {
    const disks = (await listDisks(paths)).filter(d => AUTO_DISK_NAMES.some(re => re.test(d)))
    if (disks.length > 0 || Date.now() >= deadline) return disks
    await new Promise(resolve => setTimeout(resolve, pollMs))
  }
}

export async function diskInfo (paths: SystemPaths, name: string): Promise<DiskInfo> {
  const dir = join(paths.sys, 'class/block', name)
  const units = Number(await readText(join(dir, 'size')))
  const sectorSize = Number(await readText(join(dir, 'queue/logical_block_size')) ?? SECTOR_UNIT)
  return { device: join(paths.dev, name), name, bytes: units * SECTOR_UNIT, sectorSize: sectorSize > 0 ? sectorSize : SECTOR_UNIT }
}

/** The disk a plan's device names ("auto": the first suitable one), or ERR_DISK_NOT_FOUND. */
export async function resolveDisk (device: string, paths: SystemPaths = SYSTEM_PATHS, exclude: string[] = []): Promise<DiskInfo> {
  const disks = await listDisks(paths)
  const present = disks.length === 0 ? 'none' : disks.join(', ')
  if (device === 'auto') {
    for (const pattern of AUTO_DISK_NAMES) {
      for (const name of disks.filter(d => pattern.test(d) && !exclude.includes(d))) {
        const info = await diskInfo(paths, name)
        const removable = await readText(join(paths.sys, 'class/block', name, 'removable'))
        if (info.bytes > 0 && removable !== '1' && !(await usersOf(paths, name)).length) return info
      }
    }
    throw new SiError('ERR_DISK_NOT_FOUND', `no disk to install on (device "auto" takes the first unused, non-removable vd*, sd*, nvme*, xvd*, hd* or mmcblk* disk; present: ${present})`)
  }
  let name: string
  try {
    const real = await realpath(device)
    if (!(await stat(real)).isBlockDevice()) throw new Error('not a block device')
    name = basename(real)
  } catch (err) {
    throw new SiError('ERR_DISK_NOT_FOUND', `unknown disk ${device}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such device' : (err as Error).message} (disks present: ${present})`)
  }
  if (!disks.includes(name)) throw new SiError('ERR_DISK_NOT_FOUND', `${device} is not a whole disk (disks present: ${present})`)
  const info = await diskInfo(paths, name)
  if (info.bytes === 0) throw new SiError('ERR_DISK_NOT_FOUND', `disk ${device} has no medium (size 0)`)
  return { ...info, device }
}

async function partitionsOf (paths: SystemPaths, name: string): Promise<string[]> {
  let entries: string[] = []
  try { entries = await readdir(join(paths.sys, 'class/block', name)) } catch { return [] }
  const parts: string[] = []
  for (const e of entries) {
    if (e.startsWith(name) && await readText(join(paths.sys, 'class/block', name, e, 'partition')) !== undefined) parts.push(e)
  }
  return parts
}

/** What uses the disk or one of its partitions: mounts, swap, holders (dm, md). */
export async function usersOf (paths: SystemPaths, name: string): Promise<string[]> {
  const names = [name, ...await partitionsOf(paths, name)]
  const users: string[] = []
  const mounts = (await readText(join(paths.proc, 'mounts')) ?? '').split('\n').map(l => l.split(' '))
  const swaps = (await readText(join(paths.proc, 'swaps')) ?? '').split('\n').slice(1).map(l => l.split(/\s+/)[0])
  for (const n of names) {
    const dev = join(paths.dev, n)
    for (const [source, target] of mounts) if (source === dev) users.push(`${dev} is mounted on ${target}`)
    if (swaps.includes(dev)) users.push(`${dev} is in use as swap`)
    let holders: string[] = []
    try { holders = await readdir(join(paths.sys, 'class/block', n, 'holders')) } catch { /* none */ }
    for (const h of holders) users.push(`${dev} is held by ${h}`)
  }
  return users
}

export async function ensureUnused (paths: SystemPaths, disk: DiskInfo): Promise<void> {
  const users = await usersOf(paths, disk.name)
  if (users.length > 0) throw new SiError('ERR_DISK_IN_USE', `disk ${disk.device} is in use, refusing to partition it: ${users.join('; ')}`)
}
