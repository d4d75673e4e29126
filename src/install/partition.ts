// Writes a disk's new partition table with sfdisk and waits for the kernel to show
// the partitions. The first write to a disk in the whole install happens here.
import { stat } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { runCommand } from './command.ts'
import { sfdiskScript, type DiskLayout } from './disk-layout.ts'

/** After this long without partition nodes, ask the kernel again with partx. */
export const REREAD_AFTER_MS = 2_000
export const PARTITION_WAIT_MS = 15_000
const POLL_MS = 100

async function isBlockDevice (path: string): Promise<boolean> {
  try { return (await stat(path)).isBlockDevice() } catch { return false }
}

async function allPresent (layout: DiskLayout): Promise<boolean> {
  for (const p of layout.partitions) if (!await isBlockDevice(p.device)) return false
  return true
}

export async function writePartitionTable (layout: DiskLayout, signal?: AbortSignal): Promise<void> {
  // --wipe: old file system and RAID signatures must not survive to confuse blkid or
  // the booted system.
  await runCommand('sfdisk', ['--wipe', 'always', '--wipe-partitions', 'always', '--quiet', layout.device], { input: sfdiskScript(layout), signal })
  const started = Date.now()
  let reread = false
  while (!await allPresent(layout)) {
    const waited = Date.now() - started
    if (waited > PARTITION_WAIT_MS) {
      throw new SiError('ERR_COMMAND_FAILED', `partitions of ${layout.device} did not appear within ${PARTITION_WAIT_MS / 1000} s (missing: ${layout.partitions.map(p => p.device).join(', ')})`)
    }
    if (!reread && waited > REREAD_AFTER_MS) {
      reread = true
      // Some block drivers (loop) ignore sfdisk's re-read; partx adds partitions one by one.
      await runCommand('partx', ['--add', layout.device], { signal }).catch(() => runCommand('partx', ['--update', layout.device], { signal }))
    }
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}
