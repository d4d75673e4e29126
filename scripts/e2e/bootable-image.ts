// The bootable image of the install-then-boot e2e run (`make e2e-boot`): a minimal
// Debian bookworm made with debootstrap, with Debian's kernel, grub for BIOS and for
// EFI, systemd with few units, systemd-networkd (DHCP) and the first-boot report
// (examples/firstboot), which tells si-server "booted" once the installed system is up.
//
// Made once and cached under BOOT_IMAGE_CACHE (default /var/cache/swarmimager-e2e; the
// environment variable SI_E2E_CACHE moves it), in a directory named by a hash of the
// package list, this file's setup script and the first-boot files: change any of them
// and the next run makes a new tree (about 3-6 minutes with Debian's mirror; delete old
// trees by hand). Lean for TCG: only the kernel modules a VM or a common server needs to
// boot from its disk and reach the network are kept, the initramfs lists them (MODULES=
// list), documentation and locales are dropped, timers are masked.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SiError } from '../../src/errors.ts'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const BOOT_IMAGE_CACHE = process.env.SI_E2E_CACHE ?? '/var/cache/swarmimager-e2e'
const SUITE = 'bookworm'
const MIRROR = process.env.SI_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian'
const DEBOOTSTRAP_TIMEOUT_MS = 20 * 60_000
const SETUP_TIMEOUT_MS = 10 * 60_000
const FIRSTBOOT_DIR = join(ROOT, 'examples/firstboot')

/** What the image holds besides debootstrap's minbase. */
export const PACKAGES = [
  'systemd-sysv', // init
  'udev', // device nodes and NIC names
  'linux-image-amd64', // Debian's kernel, as a real node runs
  'initramfs-tools', // the kernel's initramfs (MODULES=list below)
  'grub2-common', // grub-install, update-grub
  'grub-pc-bin', // grub for BIOS (i386-pc)
  'grub-efi-amd64-bin', // grub for UEFI (x86_64-efi)
  'e2fsprogs', // fsck of the root at boot
  'dosfstools' // fsck of the ESP at boot
]

/** Kernel modules kept (with what they need): disks, file systems, NICs of VMs and common servers. */
export const KEPT_MODULES = [
  'virtio_pci', 'virtio_blk', 'virtio_scsi', 'virtio_net', 'virtio_rng', 'sd_mod', 'ahci', 'nvme',
  'ext4', 'vfat', 'nls_cp437', 'nls_ascii', 'nls_utf8', 'crc32c_generic', 'efivarfs',
  'e1000', 'e1000e', 'igb', 'ixgbe'
]
/** What the installed system's initramfs loads to find its root. */
const INITRAMFS_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'sd_mod', 'ahci', 'nvme', 'ext4', 'crc32c_generic']
const MASKED_UNITS = [
  'apt-daily.timer', 'apt-daily-upgrade.timer', 'dpkg-db-backup.timer', 'e2scrub_all.timer', 'fstrim.timer',
  'systemd-networkd-wait-online.service', 'systemd-firstboot.service', 'e2scrub_reap.service'
]

/** Runs inside the new tree's parent: $1 is the tree. Every step is idempotent. */
const SETUP_SCRIPT = `set -eu
root=$1
kver=$(ls "$root/lib/modules" | head -n 1)
[ -n "$kver" ] || { echo "no kernel in $root/lib/modules" >&2; exit 1; }
cat >"$root/etc/default/grub" <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
EOF
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/50-wired.network" <<'EOF'
# Every wired NIC by DHCP. The client id is the MAC: nodes installed from one image
# share its machine-id, hence its DUID.
[Match]
Name=en* eth*
[Network]
DHCP=ipv4
[DHCPv4]
ClientIdentifier=mac
EOF
echo unassigned >"$root/etc/hostname"
: >"$root/etc/fstab"
sed -i 's/^MODULES=.*/MODULES=list/; s/^COMPRESS=.*/COMPRESS=gzip/' "$root/etc/initramfs-tools/initramfs.conf"
echo RESUME=none >"$root/etc/initramfs-tools/conf.d/resume"
printf '%s\\n' ${INITRAMFS_MODULES.join(' ')} >"$root/etc/initramfs-tools/modules"
install -m 0755 "$2/si-booted" "$root/usr/local/sbin/si-booted"
install -m 0644 "$2/si-booted.service" "$root/etc/systemd/system/si-booted.service"
chroot "$root" systemctl enable systemd-networkd.service si-booted.service
chroot "$root" systemctl mask ${MASKED_UNITS.join(' ')}
chroot "$root" passwd -d root >/dev/null
# Only the modules kept, with their dependencies.
keep=$(modprobe -d "$root" -S "$kver" --show-depends -a ${KEPT_MODULES.join(' ')} | awk '$1 == "insmod" { print $2 }' | sed "s|^$root||" | sort -u)
find "$root/lib/modules/$kver/kernel" -type f -name '*.ko*' | sed "s|^$root||" | sort >"$root/tmp/all-modules"
echo "$keep" | comm -23 "$root/tmp/all-modules" - | sed "s|^|$root|" | xargs -r rm -f
rm -f "$root/tmp/all-modules"
find "$root/lib/modules/$kver/kernel" -type d -empty -delete
depmod -b "$root" "$kver"
mount -t proc proc "$root/proc"
trap 'umount "$root/proc"' EXIT
chroot "$root" update-initramfs -u -k "$kver"
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
`

/** The cache key: what makes the tree. */
async function treeKey (): Promise<string> {
  const h = createHash('sha256')
  h.update(SUITE).update(PACKAGES.join(',')).update(SETUP_SCRIPT)
  for (const f of ['si-booted', 'si-booted.service']) h.update(await readFile(join(FIRSTBOOT_DIR, f)))
  return h.digest('hex').slice(0, 12)
}

function runLogged (argv: string[], log: string, timeoutMs: number): void {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 })
  const out = `$ ${argv.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}\n`
  spawnSync('sh', ['-c', 'cat >>"$1"', 'sh', log], { input: out })
  if (r.status !== 0) {
    throw new SiError('ERR_COMMAND_FAILED', `${argv.slice(0, 2).join(' ')} failed (${r.error?.message ?? `exit ${String(r.status)}`}): ${(r.stderr ?? '').trim().split('\n').slice(-4).join(' | ')} (log: ${log})`)
  }
}

/** The cached tree, made now when absent. */
export async function bootableTree (log: (msg: string) => void): Promise<{ dir: string; cached: boolean }> {
  const key = await treeKey()
  const dir = join(BOOT_IMAGE_CACHE, `${SUITE}-boot-${key}`)
  try {
    // Made under a temporary name and renamed when complete: present means whole.
    if ((await stat(join(dir, 'etc/os-release'))).isFile()) return { dir, cached: true }
  } catch { /* not made yet */ }
  await mkdir(BOOT_IMAGE_CACHE, { recursive: true })
  const tmp = `${dir}.tmp-${process.pid}`
  const buildLog = `${dir}.log`
  await rm(tmp, { recursive: true, force: true })
  await writeFile(buildLog, '')
  log(`making the bootable image with debootstrap (${SUITE}, ${PACKAGES.length} packages over minbase) in ${tmp}; log ${buildLog}`)
  try {
    runLogged(['debootstrap', '--variant=minbase', `--include=${PACKAGES.join(',')}`, SUITE, tmp, MIRROR], buildLog, DEBOOTSTRAP_TIMEOUT_MS)
    runLogged(['sh', '-c', SETUP_SCRIPT, 'setup', tmp, FIRSTBOOT_DIR], buildLog, SETUP_TIMEOUT_MS)
    await rename(tmp, dir)
  } catch (err) {
    spawnSync('umount', [join(tmp, 'proc')], { stdio: 'ignore' })
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
  return { dir, cached: false }
}
