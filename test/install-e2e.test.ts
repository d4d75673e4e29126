// The e2e harness's own parts (the runs themselves are `make e2e`): plans it serves are
// valid, its qemu and udhcpd settings, and how it reads timings off the console.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { validatePlan } from '../src/formats/plan.ts'
import { resolveConfig } from '../src/install/config.ts'
import { plan, EXPECTED_PARTITIONS } from '../scripts/e2e/plans.ts'
import { udhcpdConfig, vmMac, SERVER_IP } from '../scripts/e2e/lan.ts'
import { qemuArgs, consoleTimes } from '../scripts/e2e/vm.ts'
import { appendFor } from '../scripts/e2e/run.ts'

test('the e2e plan is a valid plan with one partition per expected file system', () => {
  const p = validatePlan(plan('default'), 'e2e')
  assert.deepEqual(p.disks[0].partitions.map(x => x.type), EXPECTED_PARTITIONS.map(x => x.type))
  assert.equal(p.finish, 'poweroff')
})

test('the VMs\' kernel command lines are valid agent configurations, with and without SystemImager names', () => {
  const aliases = resolveConfig({ cmdline: appendFor('vm1', { vms: 1, timeoutSeconds: 60, aliases: true }) }).config
  assert.equal(aliases.server, `http://${SERVER_IP}:8470`)
  assert.equal(aliases.image, 'e2e')
  assert.deepEqual(aliases.seedWait, { kind: 'none' })
  const swarm = resolveConfig({ cmdline: appendFor(undefined, { vms: 3, timeoutSeconds: 60, aliases: false }) })
  assert.deepEqual(swarm.config.seedWait, { kind: 'swarm' })
  assert.equal(swarm.config.node, undefined)
  assert.deepEqual(swarm.warnings, [])
})

test('qemu runs TCG with a tap NIC and a raw virtio disk; udhcpd serves the bridge', () => {
  const args = qemuArgs({ name: 'vm1', kernel: 'k', initrd: 'i', disk: 'd.raw', diskBytes: 1, tap: 'sitap0', mac: vmMac(0), append: 'a', console: 'c', exec: [] })
  assert.deepEqual(args.slice(0, 3), ['qemu-system-x86_64', '-accel', 'tcg'])
  assert.ok(args.includes('-no-reboot'))
  assert.ok(args.includes('tap,id=n0,ifname=sitap0,script=no,downscript=no'))
  assert.ok(args.includes('file=d.raw,format=raw,if=virtio,cache=unsafe'))
  assert.equal(vmMac(2), '52:54:00:5e:00:03')
  assert.match(udhcpdConfig('/l'), /^interface sibr0$/m)
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
