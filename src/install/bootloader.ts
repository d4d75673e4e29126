// The installed system's boot loader: grub from the image itself, installed from a
// chroot, so the boot loader always matches the image's grub and kernel. The firmware
// the node booted the installer with decides which grub: UEFI gets grub on the ESP at
// the removable-media fallback path, BIOS gets grub in the disk's boot code (on GPT,
// in a bios-boot partition). An image without grub (a container-style or netboot
// image) is left as it is unless the plan insists on grub.
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import { withChroot, hasFile } from './chroot.ts'
import type { Formatted } from './filesystems.ts'
import type { BootloaderMode } from '../formats/plan.ts'

export const GRUB_TIMEOUT_MS = 10 * 60_000
const GRUB_INSTALL = ['usr/sbin/grub-install', 'sbin/grub-install']
const EFI_MOUNTS = ['/boot/efi', '/efi']

import type { Firmware } from '../formats/node-report.ts'
export type { Firmware }

/** UEFI firmware shows its variables under /sys/firmware/efi; BIOS has none. */
export async function detectFirmware (sys: string): Promise<Firmware> {
  try { return (await stat(join(sys, 'firmware/efi'))).isDirectory() ? 'uefi' : 'bios' } catch { return 'bios' }
}

export type GrubSetup =
  | { kind: 'none'; reason: string }
  | { kind: 'bios'; disk: string; commands: string[][] }
  | { kind: 'efi'; efiDir: string; commands: string[][] }

/** What to run, from what the image carries, what the layout made and how the node boots. */
export async function planGrub (root: string, mode: BootloaderMode, parts: Formatted[], rootDisk: string, firmware: Firmware): Promise<GrubSetup> {
  if (mode === 'none') return { kind: 'none', reason: 'the plan says bootloader "none"' }
  const hasGrub = (await Promise.all(GRUB_INSTALL.map(p => hasFile(root, p)))).some(Boolean)
  if (!hasGrub) {
    if (mode === 'grub') throw new SiError('ERR_BOOTLOADER', 'the plan asks for grub but the image has no grub-install (install grub-pc or grub-efi in the image)')
    return { kind: 'none', reason: 'the image has no grub-install' }
  }
  const config = await hasFile(root, 'usr/sbin/update-grub') ? ['update-grub'] : ['grub-mkconfig', '-o', '/boot/grub/grub.cfg']
  let why: string
  if (firmware === 'uefi') {
    const esp = parts.find(p => p.spec.fs === 'vfat' && EFI_MOUNTS.includes(p.spec.mount ?? ''))
    const modules = await hasFile(root, 'usr/lib/grub/x86_64-efi')
    if (esp !== undefined && modules) {
      const efiDir = esp.spec.mount as string
      // --removable: the fallback path firmware boots without an NVRAM entry, which a
      // node being imaged has no reason to trust (and --no-nvram leaves it alone).
      return { kind: 'efi', efiDir, commands: [['grub-install', '--target=x86_64-efi', `--efi-directory=${efiDir}`, '--removable', '--no-nvram'], config] }
    }
    why = esp === undefined ? 'the node boots with UEFI but the layout has no ESP (vfat at /boot/efi)' : 'the node boots with UEFI but the image has no grub x86_64-efi modules (install grub-efi-amd64-bin in it)'
  } else {
    if (await hasFile(root, 'usr/lib/grub/i386-pc')) return { kind: 'bios', disk: rootDisk, commands: [['grub-install', '--target=i386-pc', rootDisk], config] }
    why = 'the node boots with BIOS but the image has no grub i386-pc modules (install grub-pc-bin in it)'
  }
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
