// The e2e harness's own parts (the runs themselves are `make e2e`): plans it serves are
// valid, its qemu, udhcpd and dnsmasq settings, and how it reads timings off the console.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { validatePlan } from '../src/formats/plan.ts'
import { resolveConfig } from '../src/install/config.ts'
import { plan, bootPlan, EXPECTED_PARTITIONS } from '../scripts/e2e/plans.ts'
import { bootArgs } from '../scripts/e2e/boot.ts'
import { PARTITION_TYPES } from '../src/formats/plan.ts'
import { udhcpdConfig, dnsmasqConfig, vmMac, SERVER_IP, CHAIN_SCRIPT } from '../scripts/e2e/lan.ts'
import { qemuArgs, consoleTimes, OVMF_FIRMWARE, type VmSpec } from '../scripts/e2e/vm.ts'
import { appendFor } from '../scripts/e2e/run.ts'

test('the e2e plan is a valid plan with one partition per expected file system', () => {
  const p = validatePlan(plan('default'), 'e2e')
  assert.deepEqual(p.disks[0].partitions.map(x => x.type), EXPECTED_PARTITIONS.map(x => x.type))
  assert.equal(p.finish, 'poweroff')
})

test('the install-then-boot plan boots on either firmware: bios-boot, an ESP, ext4 root, grub required', () => {
  for (const finish of ['reboot', 'kexec'] as const) {
    const p = validatePlan(bootPlan(finish), 'e2e-boot')
    assert.deepEqual(p.disks[0].partitions.map(x => x.type), [PARTITION_TYPES['bios-boot'], PARTITION_TYPES.esp, PARTITION_TYPES.linux])
    assert.equal(p.bootloader, 'grub')
    assert.equal(p.finish, finish)
  }
  const r = resolveConfig({ cmdline: `initrd=initrd.img si.server=http://${SERVER_IP}:8470 si.netdev=52:54:00:5e:00:01 ${bootArgs(600)}` })
  assert.deepEqual(r.warnings, [])
  assert.deepEqual(r.config.seedWait, { kind: 'swarm' })
})

test('the VMs\' kernel command lines are valid agent configurations, with and without SystemImager names', () => {
  const aliases = resolveConfig({ cmdline: appendFor('vm1', { vms: 1, timeoutSeconds: 60, aliases: true }) }).config
  assert.equal(aliases.server, `http://${SERVER_IP}:8470`)
  assert.equal(aliases.image, 'e2e')
  assert.deepEqual(aliases.seedWait, { kind: 'none' })
  assert.match(appendFor('vm1', { vms: 1, timeoutSeconds: 60, aliases: true }), /IPADDR=\S+ NETMASK=255\.255\.255\.0 GATEWAY=/)
  const swarm = resolveConfig({ cmdline: appendFor(undefined, { vms: 3, timeoutSeconds: 60, aliases: false }) })
  assert.deepEqual(swarm.config.seedWait, { kind: 'swarm' })
  assert.equal(swarm.config.node, undefined)
  assert.deepEqual(swarm.warnings, [])
})

const DIRECT: VmSpec = { name: 'vm1', firmware: 'bios', boot: { pxe: 'direct', kernel: 'k', initrd: 'i', append: 'a' }, reboot: 'exit', disk: 'd.raw', diskBytes: 1, tap: 'sbtap0', mac: vmMac(0), console: 'c', exec: [] }

test('qemu runs TCG with a tap NIC and a raw virtio disk; udhcpd serves the bridge', () => {
  const args = qemuArgs(DIRECT)
  assert.deepEqual(args.slice(0, 3), ['qemu-system-x86_64', '-accel', 'tcg'])
  assert.ok(args.includes('-no-reboot'))
  assert.ok(args.includes('tap,id=n0,ifname=sbtap0,script=no,downscript=no'))
  assert.ok(args.includes('file=d.raw,format=raw,if=none,id=d0,cache=unsafe'))
  assert.deepEqual(args.slice(args.indexOf('-kernel'), args.indexOf('-kernel') + 6), ['-kernel', 'k', '-initrd', 'i', '-append', 'a'])
  assert.ok(!args.includes('-bios'))
  assert.equal(vmMac(2), '52:54:00:5e:00:03')
  assert.match(udhcpdConfig('/l'), /^interface sbbr0$/m)
})

test('a firmware boot has no -kernel: the disk first, then the NIC\'s ROM; UEFI is OVMF; a reboot resets the VM', () => {
  for (const firmware of ['bios', 'uefi'] as const) {
    const args = qemuArgs({ ...DIRECT, firmware, boot: { pxe: 'rom' }, reboot: 'reset' })
    assert.ok(!args.includes('-kernel') && !args.includes('-no-reboot'))
    assert.ok(args.includes('virtio-blk-pci,drive=d0,bootindex=1'))
    assert.ok(args.includes(`virtio-net-pci,netdev=n0,mac=${vmMac(0)},bootindex=2`))
    assert.equal(args.includes(OVMF_FIRMWARE), firmware === 'uefi')
  }
})

test('dnsmasq serves DHCP and TFTP on the bridge, sends iPXE to the chain script, names hosts by MAC, no DNS', () => {
  const conf = dnsmasqConfig('/w', { chainUrl: 'http://s/boot/boot.ipxe', hosts: [{ mac: vmMac(0), name: 'vm-bios' }] })
  assert.match(conf, /^port=0$/m)
  assert.match(conf, /^interface=sbbr0$/m)
  assert.match(conf, /^enable-tftp$/m)
  assert.match(conf, /^tftp-root=\/w\/tftp$/m)
  assert.match(conf, /^dhcp-match=set:ipxe,175$/m)
  assert.ok(conf.includes(`dhcp-boot=tag:ipxe,${CHAIN_SCRIPT}\n`))
  assert.ok(conf.includes(`dhcp-host=${vmMac(0)},vm-bios\n`))
})

test('timings are read from /init\'s and the agent\'s console lines', () => {
  const console = [
    '[4.17] si-init: swarmimager initramfs, kernel 6.1.0',
    '[9.03] si-init: starting si-agent install',
    'si-agent: plan: asking http://x for the plan of vm1 (MAC 52:54:00:5e:00:01), 12.12 s after kernel start',
    'si-agent: installed e2e (plan default.json) in 15.4 s, 27.4 s after kernel start; next: poweroff'
  ].join('\n')
  assert.deepEqual(consoleTimes(console), { initSeconds: 4.17, agentStartSeconds: 9.03, firstRequestSeconds: 12.12, installedSeconds: 27.4 })
})
