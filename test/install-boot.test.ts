// From the installer to the installed system's first boot: grub chosen by the firmware
// the node booted with, the kexec'd kernel keeping the installer's consoles, the
// install.env the installer leaves, and the first-boot service (examples/firstboot)
// reporting "booted" to a real HTTP server.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import http from 'node:http'
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { detectFirmware, planGrub } from '../src/install/bootloader.ts'
import { consoleArgs } from '../src/install/finish.ts'
import { INSTALL_ENV_FILE, REPORT_KEY_FILE, renderInstallEnv, writeInstallEnv } from '../src/install/install-env.ts'
import { REPORT_AUTH_HEADER, reportAuth } from '../src/formats/node-auth.ts'
import { parseNodeReport } from '../src/formats/node-report.ts'
import { PARTITION_TYPES, planToJson, validatePlan } from '../src/formats/plan.ts'
import { isSiError } from '../src/errors.ts'
import type { Formatted } from '../src/install/filesystems.ts'

const SI_BOOTED = resolve('examples/firstboot/si-booted')
const SCRIPT_TIMEOUT_MS = 20_000

async function tempDir (t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'si-boot-test-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** An image root with grub for both firmwares (as Debian's grub-pc-bin + grub-efi-amd64-bin). */
async function grubRoot (dir: string, dirs = ['usr/lib/grub/i386-pc', 'usr/lib/grub/x86_64-efi']): Promise<string> {
  const root = join(dir, 'root')
  for (const d of ['usr/sbin', ...dirs]) await mkdir(join(root, d), { recursive: true })
  await writeFile(join(root, 'usr/sbin/grub-install'), '')
  await writeFile(join(root, 'usr/sbin/update-grub'), '')
  return root
}

function part (fs: 'vfat' | 'ext4', mount: string, n: number): Formatted {
  return { number: n, device: `/dev/vda${n}`, startSector: 2048 * n, sectors: 2048, bytes: 1 << 20, uuid: 'x', spec: { size: { kind: 'rest' }, type: fs === 'vfat' ? PARTITION_TYPES.esp : PARTITION_TYPES.linux, fs, mount, mkfsOptions: [] } }
}

test('the firmware is UEFI when /sys/firmware/efi exists, else BIOS', async t => {
  const sys = await tempDir(t)
  assert.equal(await detectFirmware(sys), 'bios')
  await mkdir(join(sys, 'firmware/efi'), { recursive: true })
  assert.equal(await detectFirmware(sys), 'uefi')
})

test('grub follows the firmware: UEFI at the removable path on the ESP, BIOS into the disk', async t => {
  const root = await grubRoot(await tempDir(t))
  const parts = [part('vfat', '/boot/efi', 2), part('ext4', '/', 3)]
  const efi = await planGrub(root, 'auto', parts, '/dev/vda', 'uefi')
  assert.equal(efi.kind, 'efi')
  assert.deepEqual(efi.kind === 'efi' ? efi.commands[0] : [], ['grub-install', '--target=x86_64-efi', '--efi-directory=/boot/efi', '--removable', '--no-nvram'])
  const bios = await planGrub(root, 'auto', parts, '/dev/vda', 'bios')
  assert.deepEqual(bios.kind === 'bios' ? bios.commands[0] : [], ['grub-install', '--target=i386-pc', '/dev/vda'])
})

test('a UEFI node without an ESP, or an image without that firmware\'s grub, fails under "grub" and is skipped under "auto"', async t => {
  const dir = await tempDir(t)
  const root = await grubRoot(dir)
  await assert.rejects(planGrub(root, 'grub', [part('ext4', '/', 1)], '/dev/vda', 'uefi'), err => isSiError(err, 'ERR_BOOTLOADER') && /no ESP/.test((err as Error).message))
  const auto = await planGrub(root, 'auto', [part('ext4', '/', 1)], '/dev/vda', 'uefi')
  assert.equal(auto.kind, 'none')
  const efiOnly = await grubRoot(join(dir, 'efi-only'), ['usr/lib/grub/x86_64-efi'])
  await assert.rejects(planGrub(efiOnly, 'grub', [part('ext4', '/', 1)], '/dev/vda', 'bios'), err => isSiError(err, 'ERR_BOOTLOADER') && /grub-pc-bin/.test((err as Error).message))
})

test('a kexec\'d kernel keeps the installer\'s consoles', () => {
  assert.deepEqual(consoleArgs('initrd=initrd.img si.server=http://s console=tty0 console=ttyS0,115200n8 panic=-1'), ['console=tty0', 'console=ttyS0,115200n8'])
  assert.deepEqual(consoleArgs('quiet'), [])
})

test('install.env reads back in a shell exactly as written, quotes included', async t => {
  const root = await tempDir(t)
  const env = { SI_NODE: 'n1', SI_IMAGE: 'img@2', SI_SERVER: 'http://10.0.0.1:8470', SI_MONITOR: 'http://10.0.0.1:8470', SI_FIRMWARE: 'uefi', SI_INSTALLED_AT: 'it\'s $(not run) `either`' }
  await writeInstallEnv(root, env, 'cred-1')
  assert.equal(await readFile(join(root, INSTALL_ENV_FILE), 'utf8'), renderInstallEnv(env))
  assert.equal(await readFile(join(root, REPORT_KEY_FILE), 'utf8'), 'cred-1\n')
  assert.equal((await stat(join(root, REPORT_KEY_FILE))).mode & 0o777, 0o600)
  const out = await run('sh', ['-c', '. "$1"; printf "%s|%s" "$SI_NODE" "$SI_INSTALLED_AT"', 'sh', join(root, INSTALL_ENV_FILE)], {})
  assert.equal(out.stdout, `n1|${env.SI_INSTALLED_AT}`)
})

function run (cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} did not finish in ${SCRIPT_TIMEOUT_MS} ms: ${stderr}`)) }, SCRIPT_TIMEOUT_MS)
    child.on('error', reject)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

test('the first-boot service posts a "booted" phase event for its node, signed with its report credential as the server checks it', async t => {
  const dir = await tempDir(t)
  const received: Array<{ url: string; body: Record<string, unknown>; auth: unknown; raw: Buffer }> = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      received.push({ url: `${req.method ?? ''} ${req.url ?? ''}`, body: JSON.parse(Buffer.concat(chunks).toString()), auth: req.headers[REPORT_AUTH_HEADER], raw: Buffer.concat(chunks) })
      res.writeHead(204).end()
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.close() })
  const port = (server.address() as { port: number }).port
  const envFile = join(dir, 'install.env')
  await writeFile(envFile, renderInstallEnv({ SI_NODE: 'rack-07', SI_IMAGE: 'bookworm@1', SI_SERVER: `http://127.0.0.1:${port}`, SI_MONITOR: `http://127.0.0.1:${port}`, SI_FIRMWARE: 'bios', SI_INSTALLED_AT: 'now' }))
  // A credential as the server issues them (base64url of 32 bytes), and one with every byte value class.
  const credential = 'Zm9vYmFyLWJhei1xdXV4LXNpLWNyZWRlbnRpYWwtMDE'
  await writeFile(join(dir, 'report.key'), `${credential}\n`, { mode: 0o600 })
  const r = await run('bash', [SI_BOOTED], { SI_INSTALL_ENV: envFile, SI_REPORT_KEY: join(dir, 'report.key'), SI_BOOTED_TRIES: '3', SI_BOOTED_WAIT: '1' })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(received.length, 1)
  assert.equal(received[0].auth, reportAuth(credential, 'rack-07', received[0].raw))
  assert.equal(received[0].url, 'POST /api/nodes/rack-07/events')
  assert.equal(received[0].body.type, 'phase')
  assert.equal(received[0].body.phase, 'booted')
  // What the server reads of it: the fleet view's typed facts, not the detail's text.
  const report = parseNodeReport(received[0].body)
  assert.equal(report.phase, 'booted')
  assert.equal(report.image, 'bookworm@1')
  assert.match(report.system?.firmware ?? '', /^(bios|uefi)$/)
  assert.equal(report.system?.kernel, execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim())
  assert.equal(typeof report.system?.uptimeSeconds, 'number')
})

test('the first-boot service gives up, bounded, when the server does not answer', async t => {
  const dir = await tempDir(t)
  const closed = http.createServer()
  await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as { port: number }).port
  await new Promise<void>(resolve => closed.close(() => resolve()))
  const envFile = join(dir, 'install.env')
  await writeFile(envFile, renderInstallEnv({ SI_NODE: 'n1', SI_IMAGE: 'i', SI_SERVER: `http://127.0.0.1:${port}`, SI_MONITOR: `http://127.0.0.1:${port}`, SI_FIRMWARE: 'bios', SI_INSTALLED_AT: 'now' }))
  const r = await run('bash', [SI_BOOTED], { SI_INSTALL_ENV: envFile, SI_BOOTED_TRIES: '2', SI_BOOTED_WAIT: '0' })
  assert.equal(r.code, 1)
  assert.match(r.stderr, /could not report .* after 2 attempts/)
})

test('every partition type is a GUID that survives the trip to the agent (bios-boot was 14 digits at the end)', () => {
  const plan = validatePlan({ image: 'i', disks: [{ partitions: Object.keys(PARTITION_TYPES).map((type, i) => ({ size: '8MiB', type, fs: i === 0 ? 'ext4' : 'none', ...(i === 0 ? { mount: '/' } : {}) })) }] }, 'types')
  assert.deepEqual(validatePlan(planToJson(plan), 'as sent'), plan)
  assert.equal(PARTITION_TYPES['bios-boot'], '21686148-6449-6E6F-744E-656564454649')
})
