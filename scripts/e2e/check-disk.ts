// The host's verdict on a VM's disk after the install: the partition table, each file
// system (type, consistency, UUID in fstab), and every file against the image's source
// tree with the fidelity checker.
import { spawnSync } from 'node:child_process'
import { mkdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { compareTrees, type Difference } from '../../src/image/verify.ts'
import { must } from './proc.ts'

const PARTITION_WAIT_MS = 10_000

export interface ExpectedPartition { type: string; fs: 'vfat' | 'swap' | 'ext4' | 'xfs'; mount?: string }

export interface DiskCheck { ok: boolean; problems: string[]; differences: Difference[]; files: Record<string, string> }

async function waitForPartitions (loop: string, count: number): Promise<void> {
  const started = Date.now()
  let added = false
  for (;;) {
    let present = 0
    for (let i = 1; i <= count; i++) { try { if ((await stat(`${loop}p${i}`)).isBlockDevice()) present++ } catch { /* not yet */ } }
    if (present === count) return
    if (!added) { added = true; spawnSync('partx', ['--add', loop], { stdio: 'ignore' }) }
    if (Date.now() - started > PARTITION_WAIT_MS) throw new Error(`partitions of ${loop} did not appear`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** fsck without repairing: a file system the agent did not unmount cleanly fails here. */
const FSCK: Record<string, (dev: string) => string[]> = {
  vfat: dev => ['fsck.vfat', '-n', dev],
  ext4: dev => ['e2fsck', '-f', '-n', dev],
  xfs: dev => ['xfs_repair', '-n', dev]
}

export async function checkDisk (opts: {
  disk: string
  expected: ExpectedPartition[]
  sourceRoot: string
  /** paths the install itself writes or creates */
  allowed: Set<string>
  /** files to read from the installed root, for the caller's own checks */
  read: string[]
  workdir: string
}): Promise<DiskCheck> {
  const problems: string[] = []
  const files: Record<string, string> = {}
  let differences: Difference[] = []
  const table = JSON.parse(must(['sfdisk', '--json', opts.disk])).partitiontable as { label: string; partitions: Array<{ type: string; start: number; size: number }> }
  if (table.label !== 'gpt') problems.push(`partition table is ${table.label}, expected gpt`)
  const types = table.partitions.map(p => p.type)
  const wanted = opts.expected.map(p => p.type)
  if (JSON.stringify(types) !== JSON.stringify(wanted)) problems.push(`partition types ${types.join(',')}, expected ${wanted.join(',')}`)
  if (problems.length > 0) return { ok: false, problems, differences, files }

  const loop = must(['losetup', '--find', '--show', '--partscan', '--read-only', opts.disk]).trim()
  const mnt = join(opts.workdir, `mnt-${loop.replace(/\//g, '_')}`)
  const mounted: string[] = []
  try {
    await waitForPartitions(loop, opts.expected.length)
    const uuids: string[] = []
    for (const [i, p] of opts.expected.entries()) {
      const dev = `${loop}p${i + 1}`
      const blk = spawnSync('blkid', ['-o', 'export', dev], { encoding: 'utf8' }).stdout
      const type = /^TYPE=(.*)$/m.exec(blk)?.[1]
      const uuid = /^UUID=(.*)$/m.exec(blk)?.[1]
      if (type !== p.fs) problems.push(`${dev}: file system ${type ?? 'none'}, expected ${p.fs}`)
      if (uuid !== undefined) uuids.push(uuid)
      const fsck = FSCK[p.fs]?.(dev)
      if (fsck !== undefined) {
        const r = spawnSync(fsck[0], fsck.slice(1), { encoding: 'utf8' })
        if (r.status !== 0) problems.push(`${fsck.join(' ')}: exit ${r.status ?? r.error?.message}: ${(r.stdout + r.stderr).trim().split('\n').slice(-3).join(' / ')}`)
      }
    }
    // The host may lack vfat; ext4 and xfs hold the files.
    const order = opts.expected.map((p, i) => ({ ...p, dev: `${loop}p${i + 1}` })).filter(p => p.mount !== undefined && p.fs !== 'vfat').sort((a, b) => (a.mount as string).length - (b.mount as string).length)
    await mkdir(mnt, { recursive: true })
    for (const p of order) {
      const where = join(mnt, p.mount as string)
      must(['mount', '-o', 'ro', p.dev, where])
      mounted.push(where)
    }
    differences = (await compareTrees(opts.sourceRoot, mnt, { ignore: ['atime'] })).filter(d => !opts.allowed.has(d.path))
    for (const d of differences.slice(0, 20)) problems.push(`differs from the image: ${d.path} ${d.attribute}: expected ${d.expected}, got ${d.actual}`)
    if (differences.length > 20) problems.push(`... and ${differences.length - 20} more differences`)
    for (const f of opts.read) {
      try { files[f] = await readFile(join(mnt, f), 'utf8') } catch { problems.push(`${f} missing on the installed disk`) }
    }
    const fstab = files['etc/fstab'] ?? ''
    for (const u of uuids) if (!fstab.includes(`UUID=${u}`)) problems.push(`fstab does not name UUID=${u}`)
  } finally {
    for (const m of mounted.reverse()) spawnSync('umount', [m])
    spawnSync('losetup', ['-d', loop])
    await rm(mnt, { recursive: true, force: true })
  }
  return { ok: problems.length === 0, problems, differences, files }
}
