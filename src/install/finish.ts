// The end of an install: what the node does next. PID 1 (/init) carries it out after
// the agent has unmounted everything; the agent only decides, and for kexec loads the
// installed kernel while its file systems are still mounted.
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCommand } from './command.ts'
import { hasFile } from './chroot.ts'
import { splitCmdline } from './cmdline.ts'
import type { FinishAction } from '../formats/plan.ts'
import type { Formatted } from './filesystems.ts'

const KEXEC_TIMEOUT_MS = 60_000

/** The installed kernel and initramfs: Debian's /vmlinuz links, else the newest in /boot. */
export async function findKernel (root: string): Promise<{ kernel: string; initrd?: string } | undefined> {
  for (const [k, i] of [['vmlinuz', 'initrd.img'], ['boot/vmlinuz', 'boot/initrd.img']]) {
    if (await hasFile(root, k)) return { kernel: join(root, k), initrd: await hasFile(root, i) ? join(root, i) : undefined }
  }
  let names: string[] = []
  try { names = await readdir(join(root, 'boot')) } catch { return undefined }
  const kernels = names.filter(n => n.startsWith('vmlinuz-')).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
  const newest = kernels.pop()
  if (newest === undefined) return undefined
  const initrd = `initrd.img-${newest.slice('vmlinuz-'.length)}`
  return { kernel: join(root, 'boot', newest), initrd: names.includes(initrd) ? join(root, 'boot', initrd) : undefined }
}

export interface FinishDecision { action: FinishAction; note?: string }

/** The installer's console= words: the installed system's console is the same hardware. */
export function consoleArgs (installerCmdline: string): string[] {
  return splitCmdline(installerCmdline).filter(w => w.startsWith('console='))
}

/**
 * For kexec, loads the kernel now; falls back to reboot (with a note) when it cannot.
 * Without the plan's kexecCmdline, the kernel gets the root file system by UUID and the
 * installer's consoles.
 */
export async function prepareFinish (action: FinishAction, root: string, parts: Formatted[], cmdline: string | undefined, installerCmdline: string, signal?: AbortSignal): Promise<FinishDecision> {
  if (action !== 'kexec') return { action }
  const found = await findKernel(root)
  if (found === undefined) return { action: 'reboot', note: 'kexec: the image has no kernel in / or /boot; rebooting instead' }
  const rootFs = parts.find(p => p.spec.mount === '/')
  const append = cmdline ?? [`root=UUID=${rootFs?.uuid ?? ''}`, 'ro', ...consoleArgs(installerCmdline)].join(' ')
  try {
    await runCommand('kexec', ['-l', found.kernel, ...(found.initrd !== undefined ? [`--initrd=${found.initrd}`] : []), `--append=${append}`], { signal, timeoutMs: KEXEC_TIMEOUT_MS })
    return { action: 'kexec', note: `kexec loaded ${found.kernel.slice(root.length)} with "${append}"` }
  } catch (err) {
    return { action: 'reboot', note: `kexec failed (${(err as Error).message}); rebooting instead` }
  }
}

/** Tells /init what to do; without a file (the agent run by hand) nothing happens. */
export async function recordFinish (decision: FinishDecision, file: string | undefined): Promise<void> {
  if (file !== undefined) await writeFile(file, `${decision.action}\n`)
}
