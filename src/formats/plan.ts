// A node's plan: what to install and how. The server picks one per node (src/server/
// plans.ts) from JSON files an administrator writes; both ends validate it with this
// module, so a mistake is reported when the server loads the file, not halfway
// through formatting a disk.
import { SiError } from '../errors.ts'
import { parseImageRef } from './image-ref.ts'

export const FINISH_ACTIONS = ['reboot', 'poweroff', 'kexec', 'shell'] as const
export type FinishAction = typeof FINISH_ACTIONS[number]
export const FILESYSTEMS = ['ext4', 'xfs', 'vfat', 'swap', 'none'] as const
export type Filesystem = typeof FILESYSTEMS[number]
export const BOOTLOADER_MODES = ['auto', 'grub', 'none'] as const
export type BootloaderMode = typeof BOOTLOADER_MODES[number]
/** GPT partition types by name (the GUIDs sfdisk writes). */
export const PARTITION_TYPES = {
  linux: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
  swap: '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F',
  esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  'bios-boot': '21686148-6449-6E6F-744E-656564454649', // "Hah!IdontNeedEFI"
  xbootldr: 'BC13C2FF-59E6-4262-A352-B275FD6F7172',
  'basic-data': 'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7',
  lvm: 'E6D6D379-F507-44C2-A23C-238F2A3DF928',
  raid: 'A19D880F-05FC-4D3B-A006-743F0F84911E'
} as const
export const DEFAULT_POST_INSTALL_TIMEOUT_SECONDS = 600
const MiB = 2 ** 20
/** The smallest file system each mkfs accepts (mkfs.xfs refuses under 300 MB). */
export const MIN_FS_BYTES: Record<Filesystem, number> = { ext4: 8 * MiB, xfs: 300 * MiB, vfat: 1 * MiB, swap: 1 * MiB, none: 1 * MiB }
const GUID = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/
const SIZE = /^(\d+(?:\.\d+)?)\s*(B|K|KiB|M|MiB|G|GiB|T|TiB)?$/
const PERCENT = /^(\d+(?:\.\d+)?)%$/
const UNITS: Record<string, number> = { B: 1, K: 2 ** 10, KiB: 2 ** 10, M: 2 ** 20, MiB: 2 ** 20, G: 2 ** 30, GiB: 2 ** 30, T: 2 ** 40, TiB: 2 ** 40 }
const DEVICE = /^(auto|\/dev\/[A-Za-z0-9/_.:-]+)$/
const LABEL = /^[A-Za-z0-9_.-]{1,16}$/
const MOUNT_OPTIONS = /^[A-Za-z0-9_=,.:/-]+$/
const MKFS_OPTION = /^[A-Za-z0-9_=,.:/+-]+$/
const MAX_PARTITIONS = 128
const MAX_STEPS = 100
/** Secret names become environment variables SI_SECRET_NAME of the post-install steps. */
const SECRET_NAME = /^[A-Z][A-Z0-9_]{0,63}$/
const MAX_SECRETS = 64
const MAX_SECRET_BYTES = 4096

/** A size: bytes, a share of the disk, or what is left. */
export type SizeSpec = { kind: 'bytes'; bytes: number } | { kind: 'percent'; percent: number } | { kind: 'rest' }

export interface PartitionSpec {
  name?: string
  size: SizeSpec
  /** GPT type GUID */
  type: string
  fs: Filesystem
  mount?: string
  label?: string
  mountOptions?: string
  mkfsOptions: string[]
}

export interface DiskSpec {
  /** /dev/... or "auto": the node's first disk */
  device: string
  partitions: PartitionSpec[]
}

export interface PostInstallStep { name: string; run: string; timeoutSeconds: number }

export interface Plan {
  image: string
  /** overrides (si-server override add) laid over the image, in order; as the server sends it: the plan's own, then the node's groups', then its own, each NAME@VERSION */
  overrides: string[]
  disks: DiskSpec[]
  bootloader: BootloaderMode
  postInstall: PostInstallStep[]
  finish: FinishAction
  /** kernel command line for finish "kexec" (default: root=UUID=... ro) */
  kexecCmdline?: string
  /**
   * Values the post-install steps need but nobody else may see (a root password): the
   * server serves a plan that has any only to a node that proved itself, sealed for it;
   * the steps get them as SI_SECRET_NAME, and their output shows them redacted.
   */
  secrets: Record<string, string>
}

export function parseSize (text: string): SizeSpec | undefined {
  if (text === 'rest') return { kind: 'rest' }
  const p = PERCENT.exec(text)
  if (p !== null) {
    const percent = Number(p[1])
    return percent > 0 && percent <= 100 ? { kind: 'percent', percent } : undefined
  }
  const m = SIZE.exec(text)
  if (m === null) return undefined
  const bytes = Math.round(Number(m[1]) * UNITS[m[2] ?? 'B'])
  return bytes > 0 && Number.isSafeInteger(bytes) ? { kind: 'bytes', bytes } : undefined
}

class Checker {
  constructor (private readonly where: string) {}
  fail (path: string, message: string): never {
    throw new SiError('ERR_PLAN', `${this.where}: ${path}: ${message}`)
  }

  object (v: unknown, path: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, 'expected an object')
    return v as Record<string, unknown>
  }

  only (o: Record<string, unknown>, path: string, keys: string[]): void {
    const extra = Object.keys(o).find(k => !keys.includes(k))
    if (extra !== undefined) this.fail(path, `unknown key ${JSON.stringify(extra)} (expected ${keys.join(', ')})`)
  }

  string (v: unknown, path: string, pattern?: RegExp, hint?: string): string {
    if (typeof v !== 'string' || v === '') this.fail(path, 'expected a non-empty string')
    if (pattern !== undefined && !pattern.test(v)) this.fail(path, `invalid value ${JSON.stringify(v)}${hint !== undefined ? ` (${hint})` : ''}`)
    return v
  }

  optionalString (v: unknown, path: string, pattern?: RegExp, hint?: string): string | undefined {
    return v === undefined ? undefined : this.string(v, path, pattern, hint)
  }

  array (v: unknown, path: string, max: number): unknown[] {
    if (!Array.isArray(v)) this.fail(path, 'expected an array')
    if (v.length > max) this.fail(path, `at most ${max} items`)
    return v
  }

  oneOf<T extends string> (v: unknown, path: string, values: readonly T[], fallback: T): T {
    if (v === undefined) return fallback
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) this.fail(path, `expected one of ${values.join(', ')}`)
    return v as T
  }
}

function defaultType (fs: Filesystem, mount: string | undefined): string {
  if (fs === 'swap') return PARTITION_TYPES.swap
  if (fs === 'vfat') return mount === '/boot/efi' || mount === '/efi' ? PARTITION_TYPES.esp : PARTITION_TYPES['basic-data']
  return PARTITION_TYPES.linux
}

function checkMount (c: Checker, v: unknown, path: string): string | undefined {
  const mount = c.optionalString(v, path)
  if (mount === undefined) return undefined
  const parts = mount.split('/')
  if (!mount.startsWith('/') || parts.some(p => p === '.' || p === '..') || /\/\/|\s|\0/.test(mount) || (mount.length > 1 && mount.endsWith('/'))) {
    c.fail(path, `invalid mount point ${JSON.stringify(mount)} (an absolute path without . or ..)`)
  }
  return mount
}

function checkPartition (c: Checker, v: unknown, path: string): PartitionSpec {
  const o = c.object(v, path)
  c.only(o, path, ['name', 'size', 'type', 'fs', 'mount', 'label', 'mountOptions', 'mkfsOptions'])
  const sizeText = c.string(o.size, `${path}.size`)
  const size = parseSize(sizeText) ?? c.fail(`${path}.size`, `invalid size ${JSON.stringify(sizeText)} (e.g. 512MiB, 2GiB, 10%, rest)`)
  const fs = c.oneOf(o.fs, `${path}.fs`, FILESYSTEMS, 'none')
  const mount = checkMount(c, o.mount, `${path}.mount`)
  if (mount !== undefined && (fs === 'swap' || fs === 'none')) c.fail(`${path}.mount`, `a ${fs} partition is not mounted`)
  let type = defaultType(fs, mount)
  if (o.type !== undefined) {
    const t = c.string(o.type, `${path}.type`)
    type = (PARTITION_TYPES as Record<string, string>)[t] ?? (GUID.test(t) ? t.toUpperCase() : c.fail(`${path}.type`, `unknown type ${JSON.stringify(t)} (${Object.keys(PARTITION_TYPES).join(', ')} or a GUID)`))
  }
  if (size.kind === 'bytes' && size.bytes < MIN_FS_BYTES[fs]) c.fail(`${path}.size`, `${sizeText} is smaller than the ${MIN_FS_BYTES[fs] / MiB} MiB a${fs === 'none' ? ' partition' : `n ${fs} file system`} needs`)
  const mkfsOptions = o.mkfsOptions === undefined ? [] : c.array(o.mkfsOptions, `${path}.mkfsOptions`, 32).map((x, i) => c.string(x, `${path}.mkfsOptions[${i}]`, MKFS_OPTION))
  return {
    name: c.optionalString(o.name, `${path}.name`, LABEL, '1-16 of A-Z a-z 0-9 _ . -'),
    size,
    type,
    fs,
    mount,
    label: c.optionalString(o.label, `${path}.label`, LABEL, '1-16 of A-Z a-z 0-9 _ . -'),
    mountOptions: c.optionalString(o.mountOptions, `${path}.mountOptions`, MOUNT_OPTIONS),
    mkfsOptions
  }
}

function checkDisk (c: Checker, v: unknown, path: string): DiskSpec {
  const o = c.object(v, path)
  c.only(o, path, ['device', 'partitions'])
  const device = o.device === undefined ? 'auto' : c.string(o.device, `${path}.device`, DEVICE, '/dev/NAME or auto')
  const list = c.array(o.partitions, `${path}.partitions`, MAX_PARTITIONS)
  if (list.length === 0) c.fail(`${path}.partitions`, 'at least one partition')
  const partitions = list.map((p, i) => checkPartition(c, p, `${path}.partitions[${i}]`))
  if (partitions.filter(p => p.size.kind === 'rest').length > 1) c.fail(`${path}.partitions`, 'only one partition can take the rest of the disk')
  return { device, partitions }
}

function checkStep (c: Checker, v: unknown, path: string, index: number): PostInstallStep {
  if (typeof v === 'string') return { name: `step ${index + 1}`, run: c.string(v, path), timeoutSeconds: DEFAULT_POST_INSTALL_TIMEOUT_SECONDS }
  const o = c.object(v, path)
  c.only(o, path, ['name', 'run', 'timeoutSeconds'])
  const timeout = o.timeoutSeconds ?? DEFAULT_POST_INSTALL_TIMEOUT_SECONDS
  if (typeof timeout !== 'number' || !(timeout > 0 && timeout <= 86_400)) c.fail(`${path}.timeoutSeconds`, 'expected seconds from 1 to 86400')
  return { name: c.optionalString(o.name, `${path}.name`) ?? `step ${index + 1}`, run: c.string(o.run, `${path}.run`), timeoutSeconds: timeout }
}

function checkSecrets (c: Checker, v: unknown): Record<string, string> {
  if (v === undefined) return {}
  const o = c.object(v, 'secrets')
  const names = Object.keys(o)
  if (names.length > MAX_SECRETS) c.fail('secrets', `at most ${MAX_SECRETS} secrets`)
  const secrets: Record<string, string> = {}
  for (const name of names) {
    if (!SECRET_NAME.test(name)) c.fail(`secrets.${name}`, 'invalid name (A-Z, 0-9 and _, starting with a letter, at most 64)')
    const value = o[name]
    // The value itself never goes into a message.
    if (typeof value !== 'string' || value === '') c.fail(`secrets.${name}`, 'expected a non-empty string')
    if (Buffer.byteLength(value) > MAX_SECRET_BYTES) c.fail(`secrets.${name}`, `longer than ${MAX_SECRET_BYTES} bytes`)
    secrets[name] = value
  }
  return secrets
}

function checkImageRef (c: Checker, v: unknown, path: string): string {
  const ref = c.string(v, path)
  try { parseImageRef(ref) } catch (err) { c.fail(path, (err as Error).message) }
  return ref
}

/** A checked plan from parsed JSON; `where` names its origin in errors. */
export function validatePlan (value: unknown, where: string): Plan {
  const c = new Checker(where)
  const o = c.object(value, 'plan')
  c.only(o, 'plan', ['image', 'overrides', 'disks', 'bootloader', 'postInstall', 'finish', 'kexecCmdline', 'secrets', 'description'])
  const disks = c.array(o.disks, 'disks', 16).map((d, i) => checkDisk(c, d, `disks[${i}]`))
  if (disks.length === 0) c.fail('disks', 'at least one disk')
  const devices = disks.map(d => d.device)
  if (new Set(devices).size !== devices.length) c.fail('disks', 'a device is listed twice')
  const mounts = disks.flatMap(d => d.partitions.map(p => p.mount)).filter((m): m is string => m !== undefined)
  if (!mounts.includes('/')) c.fail('disks', 'no partition is mounted at /')
  const twice = mounts.find((m, i) => mounts.indexOf(m) !== i)
  if (twice !== undefined) c.fail('disks', `${twice} is mounted twice`)
  return {
    image: checkImageRef(c, o.image, 'image'),
    overrides: o.overrides === undefined ? [] : c.array(o.overrides, 'overrides', 32).map((r, i) => checkImageRef(c, r, `overrides[${i}]`)),
    disks,
    bootloader: c.oneOf(o.bootloader, 'bootloader', BOOTLOADER_MODES, 'auto'),
    postInstall: o.postInstall === undefined ? [] : c.array(o.postInstall, 'postInstall', MAX_STEPS).map((s, i) => checkStep(c, s, `postInstall[${i}]`, i)),
    finish: c.oneOf(o.finish, 'finish', FINISH_ACTIONS, 'reboot'),
    kexecCmdline: c.optionalString(o.kexecCmdline, 'kexecCmdline'),
    secrets: checkSecrets(c, o.secrets)
  }
}

/** Plans travel as JSON: sizes back to text so the agent validates the same document. */
export function planToJson (plan: Plan): unknown {
  const size = (s: SizeSpec): string => s.kind === 'rest' ? 'rest' : s.kind === 'percent' ? `${s.percent}%` : `${s.bytes}B`
  return {
    ...plan,
    disks: plan.disks.map(d => ({ ...d, partitions: d.partitions.map(p => ({ ...p, size: size(p.size) })) }))
  }
}
