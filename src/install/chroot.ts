// Commands inside the installed system (grub-install, post-install steps) see the
// node's devices and kernel interfaces as they will after boot: /dev, /proc and /sys
// are mounted into the target for the time of the commands, and always taken down.
import { access, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import { runCommand, type CommandOptions, type CommandResult } from './command.ts'
import { unmountAll } from './filesystems.ts'

const KERNEL_MOUNTS: Array<{ dir: string; args: string[] }> = [
  { dir: 'dev', args: ['-o', 'bind', '/dev'] },
  { dir: 'proc', args: ['-t', 'proc', 'proc'] },
  { dir: 'sys', args: ['-t', 'sysfs', 'sysfs'] }
]

export async function withChroot<T> (root: string, fn: (run: (argv: string[], opts?: CommandOptions) => Promise<CommandResult>) => Promise<T>): Promise<T> {
  const mounted: string[] = []
  try {
    for (const m of KERNEL_MOUNTS) {
      const where = join(root, m.dir)
      await mkdir(where, { recursive: true })
      await runCommand('mount', [...m.args, where])
      mounted.push(where)
    }
    return await fn(async (argv, opts) => await runCommand('chroot', [root, ...argv], opts))
  } finally {
    const stuck = await unmountAll(mounted)
    if (stuck.length > 0) throw new SiError('ERR_COMMAND_FAILED', `cannot unmount from the target: ${stuck.join('; ')}`)
  }
}

export async function hasFile (root: string, path: string): Promise<boolean> {
  try { await access(join(root, path)); return true } catch { return false }
}
