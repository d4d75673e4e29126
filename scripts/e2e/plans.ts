// The e2e plans: one layout with every supported file system, selected by host name,
// MAC address, group and default, each leaving a marker so the host can tell which
// plan a VM really followed.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PARTITION_TYPES } from '../../src/formats/plan.ts'
import type { ExpectedPartition } from './check-disk.ts'
import { SRV_DIR } from './test-image.ts'
import { INSTALL_ENV_FILE, REPORT_KEY_FILE } from '../../src/install/install-env.ts'

export const IMAGE = 'e2e'
export const DISK_BYTES = 768 * 1024 * 1024
export const PLAN_MARKER = 'etc/si-plan'

export const EXPECTED_PARTITIONS: ExpectedPartition[] = [
  { type: PARTITION_TYPES.esp, fs: 'vfat', mount: '/boot/efi' },
  { type: PARTITION_TYPES.swap, fs: 'swap' },
  { type: PARTITION_TYPES.linux, fs: 'ext4', mount: '/' },
  { type: PARTITION_TYPES.linux, fs: 'xfs', mount: `/${SRV_DIR}` }
]

/** What the install writes into the image's tree (every other path must match it). */
export const INSTALL_WRITES = new Set(['.', 'etc', 'etc/fstab', 'etc/hostname', PLAN_MARKER, 'lost+found', 'boot/efi', 'etc/swarmimager', INSTALL_ENV_FILE, REPORT_KEY_FILE])

export function plan (marker: string): unknown {
  return {
    description: `e2e plan (${marker})`,
    image: IMAGE,
    disks: [{
      device: 'auto',
      partitions: [
        { name: 'esp', size: '32MiB', fs: 'vfat', mount: '/boot/efi', label: 'ESP' },
        { name: 'swap', size: '32MiB', fs: 'swap' },
        { name: 'root', size: '256MiB', fs: 'ext4', mount: '/', label: 'root' },
        { name: 'srv', size: 'rest', fs: 'xfs', mount: `/${SRV_DIR}` }
      ]
    }],
    bootloader: 'auto',
    postInstall: [
      { name: 'hostname', run: 'echo "$SI_NODE" > /etc/hostname' },
      { name: 'marker', run: `echo "plan=${marker} node=$SI_NODE image=$SI_IMAGE" > /${PLAN_MARKER}` }
    ],
    finish: 'poweroff'
  }
}

/** VM i's expected plan marker; a VM without si.node is known by its MAC. */
export async function writePlans (dir: string, vms: Array<{ node?: string; mac: string }>): Promise<Map<number, string>> {
  const markers = new Map<number, string>()
  await mkdir(join(dir, 'hosts'), { recursive: true })
  await mkdir(join(dir, 'macs'), { recursive: true })
  await mkdir(join(dir, 'groups'), { recursive: true })
  await writeFile(join(dir, 'default.json'), JSON.stringify(plan('default'), null, 2))
  await writeFile(join(dir, 'groups/rack.json'), JSON.stringify(plan('group'), null, 2))
  await writeFile(join(dir, 'groups.conf'), '# group  members\nrack  rack-*\n')
  for (const [i, vm] of vms.entries()) {
    if (vms.length === 1) { markers.set(i, 'default'); continue }
    if (vm.node === undefined) {
      await writeFile(join(dir, 'macs', `${vm.mac.replace(/:/g, '-')}.json`), JSON.stringify(plan('mac'), null, 2))
      markers.set(i, 'mac')
    } else if (vm.node.startsWith('rack-')) markers.set(i, 'group')
    else {
      await writeFile(join(dir, 'hosts', `${vm.node}.json`), JSON.stringify(plan('host'), null, 2))
      markers.set(i, 'host')
    }
  }
  return markers
}

/** The install-then-boot run's image (scripts/e2e/bootable-image.ts) and its disk. */
export const BOOT_IMAGE = 'bookworm'
export const BOOT_DISK_BYTES = 2 * 1024 * 1024 * 1024

/** One disk that boots on either firmware: bios-boot for grub i386-pc, an ESP for UEFI, ext4 root. */
export function bootPlan (finish: 'reboot' | 'kexec'): unknown {
  return {
    description: `e2e install-then-boot (${finish})`,
    image: BOOT_IMAGE,
    disks: [{
      device: 'auto',
      partitions: [
        { name: 'bios', size: '1MiB', type: 'bios-boot' },
        { name: 'esp', size: '64MiB', fs: 'vfat', mount: '/boot/efi', label: 'ESP' },
        { name: 'root', size: 'rest', fs: 'ext4', mount: '/', label: 'root' }
      ]
    }],
    bootloader: 'grub',
    postInstall: [
      { name: 'hostname', run: 'echo "$SI_NODE" > /etc/hostname' }
    ],
    finish
  }
}
