// Plans: validation, placing partitions on a disk of a given size, fstab, and the
// server's choice of plan by host name, MAC, group or default, over HTTP, along with
// the boot files for iPXE.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSiError } from '../src/errors.ts'
import { validatePlan, parseSize, planToJson, PARTITION_TYPES } from '../src/formats/plan.ts'
import { placePartitions, sfdiskScript, partitionDevice, usableRange } from '../src/install/disk-layout.ts'
import { renderFstab, keptLines } from '../src/install/fstab.ts'
import type { Formatted } from '../src/install/filesystems.ts'
import { mountOrder, newFsUuid } from '../src/install/filesystems.ts'
import { fetchPlan, planUrl } from '../src/install/plan-client.ts'
import { globMatch, parseGroups } from '../src/server/plans.ts'
import { ImageServer } from '../src/server/image-server.ts'
import { ipxeScript } from '../src/server/boot-files.ts'

const MiB = 1024 * 1024
const BASE = {
  image: 'debian@2',
  disks: [{
    device: '/dev/vda',
    partitions: [
      { name: 'esp', size: '64MiB', fs: 'vfat', mount: '/boot/efi' },
      { name: 'swap', size: '1GiB', fs: 'swap' },
      { name: 'root', size: 'rest', fs: 'ext4', mount: '/' },
      { name: 'data', size: '10%', fs: 'xfs', mount: '/data' }
    ]
  }],
  postInstall: ['echo hi', { name: 'net', run: 'true', timeoutSeconds: 5 }]
}

test('a plan is validated with defaults filled in', () => {
  const plan = validatePlan(BASE, 'test')
  assert.equal(plan.finish, 'reboot')
  assert.equal(plan.bootloader, 'auto')
  assert.deepEqual(plan.overrides, [])
  const [esp, swap, root] = plan.disks[0].partitions
  assert.equal(esp.type, PARTITION_TYPES.esp)
  assert.equal(swap.type, PARTITION_TYPES.swap)
  assert.equal(root.type, PARTITION_TYPES.linux)
  assert.deepEqual(plan.postInstall.map(s => s.name), ['step 1', 'net'])
  assert.deepEqual(validatePlan(planToJson(plan), 'round trip'), plan)
  assert.deepEqual(parseSize('1.5GiB'), { kind: 'bytes', bytes: 1.5 * 1024 * MiB })
  assert.equal(parseSize('0MiB'), undefined)
})

test('plan mistakes name the file and the field', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ ...BASE, image: 'no spaces' }, /image: invalid image name/],
    [{ ...BASE, finish: 'explode' }, /finish: expected one of reboot, poweroff, kexec, shell/],
    [{ ...BASE, disks: [] }, /disks: at least one disk/],
    [{ ...BASE, colour: 'red' }, /unknown key "colour"/],
    [{ ...BASE, disks: [{ partitions: [{ size: 'rest', fs: 'ext4', mount: '/srv' }] }] }, /no partition is mounted at \//],
    [{ ...BASE, disks: [{ partitions: [{ size: 'rest', fs: 'ext4', mount: '/' }, { size: 'rest', fs: 'xfs', mount: '/x' }] }] }, /only one partition can take the rest/],
    [{ ...BASE, disks: [{ partitions: [{ size: '1GiB', fs: 'ext4', mount: '/' }, { size: '100MiB', fs: 'xfs', mount: '/x' }] }] }, /100MiB is smaller than the 300 MiB an xfs file system needs/],
    [{ ...BASE, disks: [{ partitions: [{ size: '1GiB', fs: 'ext4', mount: '/../etc' }] }] }, /invalid mount point/],
    [{ ...BASE, disks: [{ partitions: [{ size: '1GiB', fs: 'swap', mount: '/' }] }] }, /a swap partition is not mounted/],
    [{ ...BASE, disks: [{ device: 'vda', partitions: [{ size: '1GiB', fs: 'ext4', mount: '/' }] }] }, /device: invalid value "vda"/],
    [{ ...BASE, disks: [{ partitions: [{ size: 'lots', fs: 'ext4', mount: '/' }] }] }, /invalid size "lots"/]
  ]
  for (const [plan, re] of cases) {
    assert.throws(() => validatePlan(plan, 'plans/x.json'), (e: Error) => isSiError(e, 'ERR_PLAN') && e.message.startsWith('plans/x.json: ') && re.test(e.message), re.source)
  }
})

test('partitions are placed 1 MiB aligned inside the GPT, percentages and rest resolved', () => {
  const plan = validatePlan(BASE, 'test')
  const disk = 20 * 1024 * MiB
  const layout = placePartitions(plan.disks[0], '/dev/vda', disk, 512)
  const { start, end } = usableRange(disk, 512)
  assert.equal(start, MiB)
  assert.equal(end, disk - MiB)
  const [esp, swap, root, data] = layout.partitions
  assert.deepEqual([esp.startSector, esp.sectors], [2048, 64 * 2048])
  assert.equal(swap.bytes, 1024 * MiB)
  assert.equal(data.bytes, Math.floor((end - start) * 0.1 / MiB) * MiB)
  assert.equal(esp.bytes + swap.bytes + root.bytes + data.bytes, end - start)
  assert.equal(data.startSector * 512 + data.bytes, end)
  assert.equal(root.device, '/dev/vda3')
  assert.match(sfdiskScript(layout), /^label: gpt\nunit: sectors\n\nstart=2048, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"\n/)
  assert.equal(partitionDevice('/dev/nvme0n1', 2), '/dev/nvme0n1p2')
  assert.equal(partitionDevice('/dev/sda', 2), '/dev/sda2')
})

test('a disk too small says how much the layout needs, and 4 KiB sectors are counted in sectors', () => {
  const plan = validatePlan(BASE, 'test')
  assert.throws(() => placePartitions(plan.disks[0], '/dev/vda', 1024 * MiB, 512),
    (e: Error) => isSiError(e, 'ERR_DISK_TOO_SMALL') && /disk \/dev\/vda \(1024 MiB\) is too small for the layout: it needs .*esp 64 MiB, swap 1024 MiB, root rest \(at least 8 MiB\).*nothing was written/.test(e.message))
  const layout = placePartitions(plan.disks[0], '/dev/nvme0n1', 8 * 1024 * MiB, 4096)
  assert.equal(layout.partitions[0].startSector, 256)
  assert.equal(layout.partitions[0].device, '/dev/nvme0n1p1')
})

test('fstab names file systems by UUID, parents first, and keeps non-disk lines', () => {
  const plan = validatePlan(BASE, 'test')
  const layout = placePartitions(plan.disks[0], '/dev/vda', 20 * 1024 * MiB, 512)
  const formatted: Formatted[] = layout.partitions.map(p => ({ ...p, uuid: newFsUuid(p.spec.fs).uuid }))
  assert.deepEqual(mountOrder(formatted).map(p => p.spec.mount), ['/', '/data', '/boot/efi'])
  const fstab = renderFstab(formatted, '# old\nUUID=dead / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n/dev/sda2 none swap sw 0 0\nnfs:/home /home nfs defaults 0 0\n')
  const lines = fstab.split('\n').filter(l => l !== '' && !l.startsWith('#'))
  assert.deepEqual(lines.map(l => l.split('\t').slice(1, 3).join(' ') || l.split(' ')[1]), ['/ ext4', '/data xfs', '/boot/efi vfat', 'none swap', '/proc', '/home'])
  assert.match(fstab, new RegExp(`^UUID=${formatted[2].uuid}\t/\text4\tdefaults\t0\t1$`, 'm'))
  assert.match(fstab, /^UUID=[0-9A-F]{4}-[0-9A-F]{4}\t\/boot\/efi\tvfat\tumask=0077\t0\t2$/m)
  assert.deepEqual(keptLines('LABEL=x / ext4\n# c\n\ntmpfs /tmp tmpfs 0 0'), ['tmpfs /tmp tmpfs 0 0'])
})

test('group patterns: host name wildcards and MAC addresses', () => {
  const rules = parseGroups('# comment\ncompute node[0-9]* n?? \ngpu 52:54:00:AA:BB:CC\n', 'groups.conf')
  assert.deepEqual(rules.map(r => r.group), ['compute', 'gpu'])
  assert.ok(globMatch('node*', 'NODE17'))
  assert.ok(globMatch('n??', 'n01'))
  assert.ok(!globMatch('n??', 'n001'))
  assert.ok(!globMatch('a.b', 'axb'), 'dots are literal')
  assert.throws(() => parseGroups('lonely\n', 'groups.conf'), /groups\.conf:1: expected "GROUP PATTERN\.\.\."/)
})

test('the server picks a plan by host name, then MAC, then group, then default, over HTTP', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'si-plans-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const plans = join(dir, 'plans')
  const plan = (image: string): string => JSON.stringify({ ...BASE, image })
  await mkdir(join(plans, 'hosts'), { recursive: true })
  await mkdir(join(plans, 'macs'), { recursive: true })
  await mkdir(join(plans, 'groups'), { recursive: true })
  await writeFile(join(plans, 'hosts/n1.json'), plan('by-host'))
  await writeFile(join(plans, 'macs/52-54-00-00-00-02.json'), plan('by-mac'))
  await writeFile(join(plans, 'groups.conf'), 'rack rack-*\nbroken b*\n')
  await writeFile(join(plans, 'groups/rack.json'), plan('by-group'))
  await mkdir(join(dir, 'boot'))
  await writeFile(join(dir, 'boot/vmlinuz'), 'kernel bytes')
  const server = new ImageServer({ repoDir: join(dir, 'repo'), plansDir: plans, bootDir: join(dir, 'boot'), bootKernelArgs: 'console=ttyS0', host: '127.0.0.1', port: 0, peerPort: 0, seed: false })
  await server.start()
  t.after(() => server.stop())
  const url = `http://127.0.0.1:${server.httpPort}`
  const retry = { attempts: 1, retryMs: 0 }

  assert.equal((await fetchPlan(url, { node: 'n1', macs: ['52:54:00:00:00:02'] }, retry)).plan.image, 'by-host')
  const byMac = await fetchPlan(url, { node: 'n2', macs: ['52:54:00:00:00:09', '52:54:00:00:00:02'] }, retry)
  assert.deepEqual([byMac.plan.image, byMac.source], ['by-mac', 'macs/52-54-00-00-00-02.json'])
  assert.equal((await fetchPlan(url, { node: 'rack-7', macs: [] }, retry)).plan.image, 'by-group')
  await assert.rejects(fetchPlan(url, { node: 'other', macs: [] }, retry), (e: Error) => isSiError(e, 'ERR_PLAN_NOT_FOUND') && /no plan for node other.*default\.json/.test(e.message))
  await assert.rejects(fetchPlan(url, { node: 'b1', macs: [] }, retry), (e: Error) => /group broken .*groups\/broken\.json does not exist/.test(e.message))
  await writeFile(join(plans, 'default.json'), '{"image": "x", "disks": []}')
  await assert.rejects(fetchPlan(url, { node: 'other', macs: [] }, retry), (e: Error) => /ERR_PLAN: plan .*default\.json: disks: at least one disk.*500/.test(e.message))
  await writeFile(join(plans, 'default.json'), plan('by-default'))
  assert.equal((await fetchPlan(url, { node: 'other', macs: [] }, retry)).plan.image, 'by-default')
  assert.equal((await fetch(`${url}/api/plan?node=../x`)).status, 400)
  assert.equal((await fetch(planUrl(url, 'n1', ['zz:zz']))).status, 400)

  const kernel = await fetch(`${url}/boot/vmlinuz`)
  assert.equal(await kernel.text(), 'kernel bytes')
  // What the server sends by unicast at boot is counted: at N nodes, N x (kernel + initramfs).
  assert.deepEqual([server.status().bootBytesSent, server.status().bootBytesByFile], [12, { vmlinuz: 12 }])
  assert.match(await (await fetch(`${url}/metrics`)).text(), /^si_boot_file_bytes_total\{file="vmlinuz"\} 12$/m)
  const script = await (await fetch(`${url}/boot/boot.ipxe`)).text()
  assert.equal(script, ipxeScript(url, 'console=ttyS0', server.signer?.publicKey))
  assert.match(script, /^kernel http:\/\/127\.0\.0\.1:\d+\/boot\/vmlinuz initrd=initrd\.img si\.server=http:\/\/127\.0\.0\.1:\d+ si\.netdev=\$\{netX\/mac\} si\.trusted_key=ed25519:[\w-]{43} console=ttyS0$/m)
  const missing = await fetch(`${url}/boot/initrd.img`)
  assert.equal(missing.status, 404)
  assert.match(await missing.text(), /run make initrd/)
  assert.equal((await fetch(`${url}/boot/..%2Fetc`)).status, 400)
})

test('the example plans are valid', async () => {
  const files = ['default.json', 'hosts/node001.json', 'groups/storage.json']
  for (const f of files) validatePlan(JSON.parse(await readFile(join('examples/plans', f), 'utf8')), f)
  assert.deepEqual(parseGroups(await readFile('examples/plans/groups.conf', 'utf8'), 'groups.conf').map(r => r.group), ['storage'])
})
