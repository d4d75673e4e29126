// The installed system's boot loader: grub from the image itself, installed from a
// chroot, so the boot loader always matches the image's grub and kernel. An image
// without grub (a container-style or netboot image) is left as it is unless the plan
// insists on grub.
import { SiError } from '../errors.ts'
import { withChroot, hasFile } from './chroot.ts'
import type { Formatted } from './filesystems.ts'
import type { BootloaderMode } from '../formats/plan.ts'

export const GRUB_TIMEOUT_MS = 10 * 60_000
const GRUB_INSTALL = ['usr/sbin/grub-install', 'sbin/grub-install']
const EFI_MOUNTS = ['/boot/efi', '/efi']

export type GrubSetup =
  | { kind: 'none'; reason: string }
  | { kind: 'bios'; disk: string; commands: string[][] }
  | { kind: 'efi'; efiDir: string; commands: string[][] }

/** What to run, from what the image carries and what the layout made. */
export async function planGrub (root: string, mode: BootloaderMode, parts: Formatted[], rootDisk: string): Promise<GrubSetup> {
  if (mode === 'none') return { kind: 'none', reason: 'the plan says bootloader "none"' }
  const hasGrub = (await Promise.all(GRUB_INSTALL.map(p => hasFile(root, p)))).some(Boolean)
  if (!hasGrub) {
    if (mode === 'grub') throw new SiError('ERR_BOOTLOADER', 'the plan asks for grub but the image has no grub-install (install grub-pc or grub-efi in the image)')
    return { kind: 'none', reason: 'the image has no grub-install' }
  }
  const config = await hasFile(root, 'usr/sbin/update-grub') ? ['update-grub'] : ['grub-mkconfig', '-o', '/boot/grub/grub.cfg']
  const esp = parts.find(p => p.spec.fs === 'vfat' && EFI_MOUNTS.includes(p.spec.mount ?? ''))
  if (esp !== undefined && await hasFile(root, 'usr/lib/grub/x86_64-efi')) {
    const efiDir = esp.spec.mount as string
    // --removable: the fallback path firmware boots without an NVRAM entry, which a
    // node being imaged has no reason to trust (and --no-nvram leaves it alone).
    return { kind: 'efi', efiDir, commands: [['grub-install', '--target=x86_64-efi', `--efi-directory=${efiDir}`, '--removable', '--no-nvram'], config] }
  }
  if (await hasFile(root, 'usr/lib/grub/i386-pc')) return { kind: 'bios', disk: rootDisk, commands: [['grub-install', '--target=i386-pc', rootDisk], config] }
  const why = esp === undefined ? 'no ESP (vfat at /boot/efi) in the layout and no grub i386-pc modules' : 'no grub modules for x86_64-efi or i386-pc'
  if (mode === 'grub') throw new SiError('ERR_BOOTLOADER', `cannot install grub: ${why}`)
  return { kind: 'none', reason: why }
}

export async function installGrub (root: string, setup: GrubSetup, signal?: AbortSignal): Promise<void> {
  if (setup.kind === 'none') return
  await withChroot(root, async run => {
    for (const argv of setup.commands) {
      try {
        await run(argv, { signal, timeoutMs: GRUB_TIMEOUT_MS })
      } catch (err) {
        throw new SiError('ERR_BOOTLOADER', `${argv[0]} failed: ${(err as Error).message}`, { cause: err })
      }
    }
  })
}
