// The initramfs builder: the newc writer (read back by cpio(1)), the contents list,
// kernel module closure, ldd parsing, and a small build end to end (the initramfs and
// the tool bundle beside it); what the default list puts in each; /init's syntax.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSiError } from '../src/errors.ts'
import { INIT_KEYS, resolveConfig } from '../src/install/config.ts'
import { newcArchive, type Entry } from '../initrd/lib/newc.ts'
import { parseContents } from '../initrd/lib/contents.ts'
import { parseModuleIndex, selectModules, indexFiles, loadModuleIndex } from '../initrd/lib/kmod.ts'
import { parseLdd } from '../initrd/lib/libs.ts'
import { buildInitrd, parseCompression, defaultKernelVersion, formatReport, isMostlyX86Code, DEFAULT_COMPRESSION } from '../initrd/build.ts'
import { TOOL_BUNDLE_MODULES_FILE, TOOL_BUNDLE_NAME_FILE, toolBundleName } from '../src/formats/tool-bundle.ts'
import { Signer } from '../src/formats/signature.ts'
import { BAKED_TRUSTED_KEY_FILE } from '../src/deploy/config.ts'
import { readBakedKey } from '../src/deploy/trust.ts'

const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0

async function tempDir (t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'si-initrd-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function cpioList (archive: Buffer): string[] {
  const r = spawnSync('cpio', ['-it', '--quiet'], { input: archive, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return r.stdout.trim().split('\n')
}

test('newc archives are read back by cpio, with parent directories added', { skip: !has('cpio') && 'cpio not installed' }, async t => {
  const archive = newcArchive([
    { type: 'file', path: '/usr/bin/tool', mode: 0o755, data: Buffer.from('#!/bin/sh\necho ok\n') },
    { type: 'file', path: 'etc/odd-size', mode: 0o600, data: Buffer.from('abcde') },
    { type: 'symlink', path: 'bin/sh', target: '/bin/busybox' },
    { type: 'dir', path: 'tmp', mode: 0o1777 }
  ], { mtime: 1_000_000_000 })
  assert.equal(archive.length % 4, 0)
  assert.deepEqual(cpioList(archive), ['usr', 'usr/bin', 'usr/bin/tool', 'etc', 'etc/odd-size', 'bin', 'bin/sh', 'tmp'])
  const dir = await tempDir(t)
  const r = spawnSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames'], { input: archive, cwd: dir })
  assert.equal(r.status, 0, String(r.stderr))
  assert.equal(await readFile(join(dir, 'usr/bin/tool'), 'utf8'), '#!/bin/sh\necho ok\n')
  assert.equal((await stat(join(dir, 'usr/bin/tool'))).mode & 0o7777, 0o755)
  assert.equal((await stat(join(dir, 'etc/odd-size'))).mtimeMs, 1_000_000_000_000)
  assert.equal(await readlink(join(dir, 'bin/sh')), '/bin/busybox')
  assert.equal((await stat(join(dir, 'tmp'))).mode & 0o7777, 0o1777)
  assert.throws(() => newcArchive([{ type: 'dir', path: 'a', mode: 0o755 }, { type: 'dir', path: '/a/', mode: 0o755 }], { mtime: 0 }), /given twice/)
  assert.throws(() => newcArchive([{ type: 'dir', path: '../x', mode: 0o755 }], { mtime: 0 }), /invalid initramfs path/)
})

test('the contents list: parts, optional items, errors with file and line', () => {
  const items = parseContents('# c\nbusybox /bin/busybox\npart tools\nexec /usr/sbin/sfdisk\n?exec /usr/sbin/kexec /sbin/kexec\nfile a b 0644\nmodule ext4 xfs\nsymlink sbin/init /init\n', 'list')
  assert.deepEqual(items.map(i => [i.kind, i.part, i.optional]), [
    ['busybox', 'misc', false], ['exec', 'tools', false], ['exec', 'tools', true], ['file', 'tools', false], ['module', 'tools', false], ['module', 'tools', false], ['symlink', 'tools', false]
  ])
  assert.deepEqual(items[2], { kind: 'exec', source: '/usr/sbin/kexec', dest: '/sbin/kexec', optional: true, part: 'tools', bundle: false })
  assert.equal(items[3].kind === 'file' && items[3].mode, 0o644)
  assert.throws(() => parseContents('\n\ncopy a b\n', 'list'), (e: Error) => isSiError(e, 'ERR_INITRD') && /^list:3: unknown keyword "copy"/.test(e.message))
  assert.throws(() => parseContents('file a b 999\n', 'l'), /l:1: invalid mode "999"/)
  assert.throws(() => parseContents('exec\n', 'l'), /l:1: "exec" takes 1 to 2 argument/)
})

test('the contents list: "part NAME bundle" sends a part to the tool bundle, until the next part', () => {
  const items = parseContents('part net\nmodule e1000\npart disk bundle\nexec /usr/sbin/sfdisk\nmodule ext4\npart late\nfile a b\n', 'list')
  assert.deepEqual(items.map(i => [i.part, i.bundle]), [['net', false], ['disk', true], ['disk', true], ['late', false]])
  assert.throws(() => parseContents('part disk bundel\n', 'l'), (e: Error) => isSiError(e, 'ERR_INITRD') && /l:1: .*the only word after a part's name is "bundle"/.test(e.message))
})

test('module closure follows modules.dep and softdeps through aliases; index files are filtered', () => {
  const index = parseModuleIndex('/m', {
    dep: 'kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko\nkernel/fs/jbd2/jbd2.ko:\nkernel/lib/crc16.ko:\nkernel/crypto/crc32c_generic.ko:\nkernel/drivers/net/e1000.ko.xz:\nkernel/other.ko:\n',
    alias: 'alias crypto-crc32c crc32c_generic\nalias fs-ext4 ext4\nalias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\nalias other-thing other\n',
    softdep: 'softdep ext4 pre: crypto-crc32c\n',
    builtin: 'kernel/drivers/block/loop.ko\n'
  })
  const sel = selectModules(index, ['ext4', 'e1000', 'loop', 'nope'])
  assert.deepEqual(sel.paths, ['kernel/fs/jbd2/jbd2.ko', 'kernel/lib/crc16.ko', 'kernel/fs/ext4/ext4.ko', 'kernel/crypto/crc32c_generic.ko', 'kernel/drivers/net/e1000.ko.xz'])
  assert.deepEqual(sel.builtin, ['loop'])
  assert.deepEqual(sel.missing, ['nope'])
  const files = indexFiles(index, sel.paths)
  assert.match(files.dep, /^kernel\/fs\/ext4\/ext4\.ko: kernel\/fs\/jbd2\/jbd2\.ko kernel\/lib\/crc16\.ko$/m)
  assert.match(files.dep, /^kernel\/drivers\/net\/e1000\.ko:$/m, 'decompressed at build time')
  assert.doesNotMatch(files.alias, /other/)
  assert.match(files.alias, /^alias pci:v00008086d0000100Esv\*sd\*bc\*sc\*i\* e1000$/m)
})

test('ldd output: libraries and the loader, a missing library is an error', () => {
  const out = '\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n'
  assert.deepEqual(parseLdd(out), ['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2'])
  assert.throws(() => parseLdd('\tlibfoo.so.1 => not found\n'), /a library is missing: libfoo\.so\.1 => not found/)
  assert.deepEqual(parseCompression('zstd:3').command.slice(0, 2), ['zstd', '-3'])
  assert.ok(parseCompression('xz').command.includes('--check=crc32'), 'the kernel checks only CRC32')
  assert.throws(() => parseCompression('lz4'), /expected zstd/)
})

test('xz: the x86 filter only for parts that are mostly x86-64 executables or libraries', () => {
  const xz = parseCompression(DEFAULT_COMPRESSION)
  assert.deepEqual(xz.command, ['xz', '--lzma2=preset=9e', '--check=crc32', '-T1', '-c'])
  assert.deepEqual(xz.codeCommand, ['xz', '--x86', '--lzma2=preset=9e', '--check=crc32', '-T1', '-c'])
  assert.deepEqual(parseCompression('xz:6').command.slice(0, 2), ['xz', '--lzma2=preset=6'])
  assert.equal(parseCompression('zstd').codeCommand, undefined)
  const elf = (type: number, machine: number, size: number): Buffer => {
    const data = Buffer.alloc(size)
    Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]).copy(data)
    data.writeUInt16LE(type, 16)
    data.writeUInt16LE(machine, 18)
    return data
  }
  const file = (path: string, data: Buffer): Entry => ({ type: 'file', path, mode: 0o755, data })
  const X86_64 = 62
  assert.ok(isMostlyX86Code([file('bin/tool', elf(2, X86_64, 3000)), file('etc/conf', Buffer.alloc(2000))]), 'an executable')
  assert.ok(isMostlyX86Code([file('lib/libc.so.6', elf(3, X86_64, 3000)), { type: 'symlink', path: 'lib/x', target: 'y' }]), 'a shared library')
  assert.ok(!isMostlyX86Code([file('lib/modules/ext4.ko', elf(1, X86_64, 3000))]), 'a kernel module (relocatable)')
  assert.ok(!isMostlyX86Code([file('bin/arm', elf(2, 183, 3000))]), 'another machine')
  assert.ok(!isMostlyX86Code([file('bin/tool', elf(2, X86_64, 3000)), file('data', Buffer.alloc(3001))]), 'half or less')
  assert.ok(!isMostlyX86Code([{ type: 'dir', path: 'tmp', mode: 0o755 }]), 'no files')
})

const kernelVersion = await defaultKernelVersion().catch(() => undefined)

test('a small build: busybox applets, an executable with its libraries, modules with their index', {
  skip: !existsSync('/bin/busybox') ? 'busybox-static not installed' : kernelVersion === undefined ? 'no kernel in /lib/modules and /boot' : !has('cpio') ? 'cpio not installed' : false
}, async t => {
  const dir = await tempDir(t)
  const list = join(dir, 'contents.txt')
  await writeFile(list, 'part base\nbusybox /bin/busybox\nfile initrd/init /init 0755\npart tools\nexec /usr/bin/touch\npart mods\nmodule ext4\n')
  const output = join(dir, 'initrd.img')
  const report = await buildInitrd({ contents: [list], compression: parseCompression('none'), output, mtime: 0 })
  assert.deepEqual(report.parts.map(p => p.name), ['base', 'tools', 'libs', 'mods'])
  const names = new Set<string>()
  // Concatenated archives, one per part (uncompressed here): list each in turn.
  const data = await readFile(output)
  let offset = 0
  for (const part of report.parts) {
    for (const n of cpioList(data.subarray(offset, offset + part.compressedBytes))) names.add(n)
    offset += part.compressedBytes
  }
  assert.equal(offset, data.length)
  for (const n of ['init', 'bin/busybox', 'bin/sh', 'sbin/modprobe', 'usr/bin/touch', 'lib/x86_64-linux-gnu/libc.so.6', 'lib64/ld-linux-x86-64.so.2', 'dev/console',
    `lib/modules/${kernelVersion}/modules.dep`, `lib/modules/${kernelVersion}/kernel/fs/ext4/ext4.ko`, `lib/modules/${kernelVersion}/kernel/fs/jbd2/jbd2.ko`]) {
    assert.ok(names.has(n), `${n} in the initramfs`)
  }
  assert.match(formatReport(report), /total .* budget|budget 32 MiB compressed: within/s)
})

test('an xz build: x86 filter on the executables, not on the modules; it unpacks to the same archives', {
  skip: !existsSync('/bin/busybox') ? 'busybox-static not installed' : kernelVersion === undefined ? 'no kernel in /lib/modules and /boot' : !has('cpio') ? 'cpio not installed' : !has('xz') ? 'xz-utils not installed' : false
}, async t => {
  const dir = await tempDir(t)
  const list = join(dir, 'contents.txt')
  await writeFile(list, 'part base\nfile initrd/init /init 0755\npart tools\nexec /usr/bin/touch\npart mods\nmodule ext4\n')
  const plain = await buildInitrd({ contents: [list], compression: parseCompression('none'), output: join(dir, 'plain.img'), mtime: 0 })
  // Its own cache: the build keeps only its own parts there, and must not drop those of `make initrd`.
  const packed = await buildInitrd({ contents: [list], compression: parseCompression('xz:1'), output: join(dir, 'xz.img'), mtime: 0, cacheDir: join(dir, 'cache') })
  assert.deepEqual(packed.parts.map(p => [p.name, p.codeFilter]), [['base', false], ['tools', true], ['libs', true], ['mods', false]])
  assert.deepEqual(plain.parts.map(p => p.codeFilter), [false, false, false, false])
  assert.match(formatReport(packed), /^ {2}tools .* x86 filter$/m)
  const unpacked = spawnSync('xz', ['-dc', join(dir, 'xz.img')], { maxBuffer: 256 * 1024 * 1024 })
  assert.equal(unpacked.status, 0, String(unpacked.stderr))
  assert.ok(unpacked.stdout.equals(await readFile(join(dir, 'plain.img'))), 'the concatenated xz streams unpack to the uncompressed build')
  assert.ok(packed.totalBytes < plain.totalBytes)
})

test('make initrd TRUSTED_KEY= bakes the key where the agent finds it without a flag; a malformed key stops the build', { skip: !has('cpio') && 'cpio not installed' }, async t => {
  const dir = await tempDir(t)
  const list = join(dir, 'contents.txt')
  await writeFile(list, 'part base\nfile initrd/init /init 0755\n')
  const key = Signer.generate().publicKey
  const build = (trustedKey: string, output: string): ReturnType<typeof buildInitrd> =>
    buildInitrd({ contents: [list], kernelVersion: 'none', compression: parseCompression('none'), output: join(dir, output), mtime: 0, cacheDir: join(dir, 'cache'), trustedKey })
  await build(key, 'initrd.img')
  const root = join(dir, 'root')
  await mkdir(root)
  const r = spawnSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames'], { input: await readFile(join(dir, 'initrd.img')), cwd: root })
  assert.equal(r.status, 0, String(r.stderr))
  assert.equal(await readBakedKey(join(root, BAKED_TRUSTED_KEY_FILE)), key)
  await assert.rejects(build('ed25519:short', 'bad.img'), (e: Error) => isSiError(e, 'ERR_INITRD') && /trusted key "ed25519:short": expected ed25519:/.test(e.message))
  assert.ok(!existsSync(join(dir, 'bad.img')), 'nothing built')
})

/** Unpacks an uncompressed build into `root`: cpio stops at each archive's trailer, so part by part. */
async function unpackBuild (image: string, parts: Array<{ compressedBytes: number }>, root: string): Promise<void> {
  await mkdir(root)
  const data = await readFile(image)
  let offset = 0
  for (const part of parts) {
    const r = spawnSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames'], { input: data.subarray(offset, offset + part.compressedBytes), cwd: root })
    assert.equal(r.status, 0, String(r.stderr))
    offset += part.compressedBytes
  }
}

/** Every path under `dir`, relative, with a trailing / for directories. */
async function treeList (dir: string): Promise<Set<string>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return new Set(entries.map(e => `${join(e.parentPath, e.name).slice(dir.length + 1)}${e.isDirectory() ? '/' : ''}`))
}

test('a build with bundle parts: the initramfs names the bundle, the bundle tree holds the tools, their own libraries and every module\'s index', {
  skip: !existsSync('/bin/busybox') ? 'busybox-static not installed' : kernelVersion === undefined ? 'no kernel in /lib/modules and /boot' : !has('cpio') ? 'cpio not installed' : !existsSync('/usr/bin/setfattr') ? 'attr not installed' : false
}, async t => {
  const dir = await tempDir(t)
  const list = join(dir, 'contents.txt')
  await writeFile(list, 'part base\nbusybox /bin/busybox\nfile initrd/init /init 0755\nexec /usr/bin/touch\npart net\nmodule e1000\npart tools bundle\nexec /usr/bin/setfattr\nfile initrd/rootfs/etc/si/modules.tools /etc/si/modules.tools 0644\npart mods bundle\nmodule ext4\n')
  const bundleDir = join(dir, 'tools')
  const build = (tools: 'bundle' | 'inside', output: string): ReturnType<typeof buildInitrd> =>
    buildInitrd({ contents: [list], kernelVersion, compression: parseCompression('none'), output: join(dir, output), mtime: 1_000_000_000, cacheDir: join(dir, 'cache'), tools, bundleOutput: bundleDir })
  const report = await build('bundle', 'initrd.img')
  const v = kernelVersion as string
  assert.deepEqual(report.parts.map(p => p.name), ['base', 'libs', 'net'])
  assert.equal(report.bundle?.name, toolBundleName(v))
  assert.deepEqual(report.bundle?.parts.map(p => p.name).filter(n => n !== 'libs'), ['tools', 'mods', 'modules-index'])
  const root = join(dir, 'root')
  await unpackBuild(join(dir, 'initrd.img'), report.parts, root)
  assert.equal(await readFile(join(root, TOOL_BUNDLE_NAME_FILE), 'utf8'), `${toolBundleName(v)}\n`)
  const initramfs = await treeList(root)
  assert.ok([...initramfs].some(p => p.endsWith('/e1000.ko')), 'the NIC driver stays in the initramfs')
  assert.ok(!initramfs.has('usr/bin/setfattr') && ![...initramfs].some(p => p.includes('/ext4/')), 'no bundle item in the initramfs')
  assert.ok(initramfs.has('lib/x86_64-linux-gnu/libc.so.6'))
  const bundle = await treeList(bundleDir)
  assert.ok(!bundle.has('lib/x86_64-linux-gnu/libc.so.6'), 'a library the initramfs has is not in the bundle again')
  for (const p of ['usr/bin/setfattr', TOOL_BUNDLE_MODULES_FILE.slice(1), `lib/modules/${v}/kernel/fs/ext4/ext4.ko`, `lib/modules/${v}/kernel/fs/jbd2/jbd2.ko`, `lib/modules/${v}/modules.dep`]) {
    assert.ok(bundle.has(p), `${p} in the bundle`)
  }
  const dep = await readFile(join(bundleDir, `lib/modules/${v}/modules.dep`), 'utf8')
  assert.match(dep, /\/e1000\.ko:/, 'the bundle\'s index knows the initramfs\'s modules too: it replaces the initramfs\'s')
  assert.match(dep, /\/ext4\.ko:/)
  // Whole-second times: the agent unpacks the bundle before it has perl or touch to set others.
  assert.equal((await lstat(join(bundleDir, 'usr/bin/setfattr'), { bigint: true })).mtimeNs, 1_000_000_000n * 1_000_000_000n)
  assert.match(formatReport(report), new RegExp(`tool bundle .*: image ${toolBundleName(v).replace(/\./g, '\\.')}`))

  // TOOLS=inside: one initramfs with everything, no bundle named, no stale bundle tree left to add.
  const inside = await build('inside', 'inside.img')
  assert.equal(inside.bundle, undefined)
  assert.deepEqual(inside.parts.map(p => p.name).filter(n => n !== 'libs'), ['base', 'tools', 'net', 'mods'])
  assert.ok(!existsSync(bundleDir), 'the earlier bundle tree is gone')
  const insideRoot = join(dir, 'inside')
  await unpackBuild(join(dir, 'inside.img'), inside.parts, insideRoot)
  assert.ok(!existsSync(join(insideRoot, TOOL_BUNDLE_NAME_FILE)) && existsSync(join(insideRoot, 'usr/bin/setfattr')) && existsSync(join(insideRoot, TOOL_BUNDLE_MODULES_FILE)))
  await assert.rejects(buildInitrd({ contents: [list], kernelVersion, compression: parseCompression('none'), output: join(dir, 'x.img'), mtime: 0, cacheDir: join(dir, 'cache') }),
    (e: Error) => isSiError(e, 'ERR_INITRD') && /go into the tool bundle: give the directory/.test(e.message))
  assert.ok(!existsSync(join(dir, 'x.img')), 'nothing built')
})

test('the default list: the initramfs holds busybox, /init, the agent and NIC drivers; disk tools, storage and file-system modules are in the bundle', async () => {
  const items = parseContents(await readFile('initrd/contents.txt', 'utf8'), 'initrd/contents.txt')
  const partsOf = (bundle: boolean): string[] => [...new Set(items.filter(i => i.bundle === bundle).map(i => i.part))]
  assert.deepEqual(partsOf(false), ['base', 'agent', 'modules-net'])
  assert.deepEqual(partsOf(true), ['disk-tools', 'image-tools', 'modules-storage', 'modules-fs'])
  const where = (pred: (i: typeof items[number]) => boolean): boolean[] => [...new Set(items.filter(pred).map(i => i.bundle))]
  const exec = (name: string) => (i: typeof items[number]): boolean => i.kind === 'exec' && i.source.endsWith(`/${name}`)
  const mod = (name: string) => (i: typeof items[number]): boolean => i.kind === 'module' && i.name === name
  for (const tool of ['sfdisk', 'partx', 'blkid', 'mkfs.ext4', 'mkfs.xfs', 'mkfs.vfat', 'mkswap', 'kexec', 'perl', 'touch', 'setfattr', 'setfacl']) assert.deepEqual(where(exec(tool)), [true], tool)
  for (const m of ['virtio_blk', 'ahci', 'nvme', 'sd_mod', 'ext4', 'xfs', 'vfat']) assert.deepEqual(where(mod(m)), [true], m)
  for (const m of ['virtio_net', 'virtio_pci', 'e1000', 'igb']) assert.deepEqual(where(mod(m)), [false], m)
  assert.deepEqual(where(i => i.kind === 'busybox' || (i.kind === 'exec' && i.dest === '/usr/bin/si-agent') || (i.kind === 'file' && (i.dest === '/init' || i.dest === '/sbin/si-coldplug'))), [false])
  assert.deepEqual(where(i => i.kind === 'file' && i.dest === TOOL_BUNDLE_MODULES_FILE), [true])
  const load = (await readFile('initrd/rootfs/etc/si/modules.load', 'utf8')).split('\n').filter(l => l.trim() !== '' && !l.startsWith('#'))
  assert.deepEqual(load, [], '/init loads no disk or file-system module before the bundle is there')
})

test('/init, si-coldplug, netconf.sh and the udhcpc script are valid busybox shell', { skip: !existsSync('/bin/busybox') && 'busybox not installed' }, () => {
  for (const f of ['initrd/init', 'initrd/si-coldplug', 'initrd/netconf.sh', 'initrd/udhcpc.script']) {
    const r = spawnSync('/bin/busybox', ['sh', '-n', f], { encoding: 'utf8' })
    assert.equal(r.status, 0, `${f}: ${r.stderr}`)
  }
})

test('the kernel installed here has what the default list asks for', { skip: kernelVersion === undefined && 'no kernel installed' }, async () => {
  const index = await loadModuleIndex(`/lib/modules/${kernelVersion as string}`)
  const items = parseContents(await readFile('initrd/contents.txt', 'utf8'), 'initrd/contents.txt')
  const names = items.flatMap(i => i.kind === 'module' ? [i.name] : [])
  const sel = selectModules(index, names)
  assert.deepEqual(sel.missing, [])
  assert.ok(sel.paths.some(p => p.endsWith('/crc32c_generic.ko')), 'ext4 softdep crc32c resolved')
})

/** Runs netconf.sh's net_settings under busybox sh on the given command line words. */
function netSettings (words: string[]): { ok: boolean; vars: Record<string, string> } {
  const script = '. initrd/netconf.sh; if net_settings "$@"; then s=0; else s=1; fi; printf "%s\\n" "status=$s" "mode=$NET_MODE" "ip=$NET_IP" "prefix=$NET_PREFIX" "gw=$NET_GW" "dns=$NET_DNS" "error=$NET_ERROR"'
  const r = spawnSync('/bin/busybox', ['sh', '-c', script, 'sh', ...words], { encoding: 'utf8' })
  const vars = Object.fromEntries(r.stdout.trim().split('\n').map(l => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
  return { ok: vars.status === '0', vars }
}

test('static address: si.ip/si.gw/si.dns, SystemImager\'s IPADDR/NETMASK/GATEWAY, si.* winning; DHCP without them', { skip: !existsSync('/bin/busybox') && 'busybox not installed' }, () => {
  assert.deepEqual(netSettings(['console=ttyS0', 'si.server=http://x']).vars.mode, 'dhcp')
  const s = netSettings(['si.ip=10.1.2.3/16', 'si.gw=10.1.0.1', 'si.dns=10.1.0.2,10.1.0.3'])
  assert.ok(s.ok)
  assert.deepEqual([s.vars.mode, s.vars.ip, s.vars.prefix, s.vars.gw, s.vars.dns], ['static', '10.1.2.3', '16', '10.1.0.1', '10.1.0.2 10.1.0.3'])
  const alias = netSettings(['IPADDR=192.168.5.20', 'NETMASK=255.255.254.0', 'GATEWAY=192.168.4.1'])
  assert.deepEqual([alias.vars.mode, alias.vars.ip, alias.vars.prefix, alias.vars.gw], ['static', '192.168.5.20', '23', '192.168.4.1'])
  const both = netSettings(['IPADDR=192.168.5.20', 'NETMASK=255.255.255.0', 'si.ip=10.0.0.9/8'])
  assert.deepEqual([both.vars.ip, both.vars.prefix], ['10.0.0.9', '8'])
})

test('static address mistakes are named: no prefix, bad address, bad mask, gateway without address', { skip: !existsSync('/bin/busybox') && 'busybox not installed' }, () => {
  const cases: Array<[string[], RegExp]> = [
    [['si.ip=10.0.0.5'], /si\.ip=10\.0\.0\.5: expected ADDR\/PREFIX/],
    [['si.ip=10.0.0.256/24'], /10\.0\.0\.256 is not an IPv4 address/],
    [['si.ip=10.0.0.5/33'], /prefix \/33 is not 0 to 32/],
    [['IPADDR=10.0.0.5'], /IPADDR=10\.0\.0\.5 needs NETMASK=/],
    [['IPADDR=10.0.0.5', 'NETMASK=255.0.255.0'], /NETMASK=255\.0\.255\.0: expected a netmask/],
    [['si.gw=10.0.0.1'], /go with a static address/],
    [['si.ip=10.0.0.5/24', 'si.dns=10.0.0.1,bad'], /bad is not an IPv4 address/],
    [['si.ip=10.0.0.5/24', 'si.gw=10.0.0'], /gateway 10\.0\.0 .* is not an IPv4 address/]
  ]
  for (const [words, error] of cases) {
    const r = netSettings(words)
    assert.equal(r.ok, false, words.join(' '))
    assert.match(r.vars.error, error, words.join(' '))
  }
})

test('the keys /init reads are the ones the agent accepts silently as /init\'s (INIT_KEYS)', async () => {
  const init = await readFile('initrd/init', 'utf8')
  const header = init.slice(0, init.indexOf('export PATH'))
  const read = new Set([...header.matchAll(/\b(si\.[a-z_]+)=/g)].map(m => m[1]))
  assert.deepEqual([...read].sort(), [...INIT_KEYS].sort())
  const r = resolveConfig({ cmdline: 'si.server=http://x si.ip=10.0.0.5/24 si.gw=10.0.0.1 si.dns=10.0.0.1 IPADDR=10.0.0.5 NETMASK=255.255.255.0 GATEWAY=10.0.0.1 DEVICE=eth1' })
  assert.deepEqual(r.warnings, [])
})
