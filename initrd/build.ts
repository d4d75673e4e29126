// `make initrd`: builds dist/initrd.img, the node's boot environment, from the contents
// list(s), copies the matching kernel to dist/vmlinuz, and writes the tool bundle (the
// parts marked `bundle`: disk tools, storage and file-system modules) as a tree in
// dist/tools, which `si-server image add si-tools-KERNEL --from dist/tools` makes an
// image that the agent fetches through the swarm. dist/initrd.json describes the build.
// With `--tools inside` (make initrd TOOLS=inside) the bundle's parts go into the
// initramfs instead, for sites that install offline or have few nodes.
//
// Each part of the initramfs becomes its own compressed cpio archive and the initramfs
// is their concatenation (the kernel unpacks concatenated archives in order). So each
// part's compressed size is measured exactly, parts compress in parallel, and an
// unchanged part (the kernel modules, busybox) is taken from the cache.
//
// usage: node --import tsx initrd/build.ts [--contents FILE]... [--kernel-version V]
//        [--compress xz|xz:LEVEL|zstd|zstd:LEVEL|none] (default xz, see DEFAULT_COMPRESSION)
//        [--output FILE] [--kernel-output FILE] [--trusted-key KEY]
//        [--tools bundle|inside] [--bundle-output DIR] [--manifest FILE]
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { SiError, describeError } from '../src/errors.ts'
import { OptionValueError, listOption, option } from '../src/config/options.ts'
import { integer, nonEmpty, oneOf } from '../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../src/config/command-line.ts'
import { commandHelp } from '../src/config/help.ts'
import { BAKED_TRUSTED_KEY_FILE, parseTrustedKey } from '../src/deploy/config.ts'
import { isPublicKeyText, PUBLIC_KEY_RULE } from '../src/formats/signature.ts'
import { parseContents, type Item } from './lib/contents.ts'
import { archivePath, newcArchive, type Entry } from './lib/newc.ts'
import { indexFiles, loadModuleIndex, moduleDecompressor, plainModulePath, selectModules, type ModuleIndex } from './lib/kmod.ts'
import { sharedLibraries } from './lib/libs.ts'
import { writeTree } from './lib/tree.ts'
import { TOOL_BUNDLE_NAME_FILE, toolBundleName } from '../src/formats/tool-bundle.ts'

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const DEFAULT_CONTENTS = 'initrd/contents.txt'
/** Site additions: every *.txt here is read after the main list. */
export const CONTENTS_DIR = 'initrd/contents.d'
export const DEFAULT_OUTPUT = 'dist/initrd.img'
export const DEFAULT_KERNEL_OUTPUT = 'dist/vmlinuz'
export const DEFAULT_BUNDLE_OUTPUT = 'dist/tools'
export const DEFAULT_MANIFEST = 'dist/initrd.json'
export const BUDGET_BYTES = 32 * 1024 * 1024
export const DEFAULT_CACHE_DIR = '.cache/initrd'
const MODULES_ROOT = '/lib/modules'
const BOOT_DIR = '/boot'
const LIBS_PART = 'libs'
const BASE_PART = 'base'
/** The bundle's module index (modules.dep, modules.alias of every module, initramfs's included). */
const BUNDLE_INDEX_PART = 'modules-index'
const BUSYBOX_DEST = 'bin/busybox'
const TOOL_TIMEOUT_MS = 600_000
const MiB = 1024 * 1024
/** Nodes the console needs before devtmpfs is mounted. */
const EARLY_DEVICES: Entry[] = [
  { type: 'chardev', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
  { type: 'chardev', path: 'dev/null', mode: 0o666, major: 1, minor: 3 }
]
const EMPTY_DIRS = ['proc', 'sys', 'run', 'tmp', 'mnt', 'root', 'etc']

export interface Compression {
  name: string
  /** The compressor's command line; empty: parts are stored as they are. */
  command: string[]
  /** For parts that are mostly x86 code (isMostlyX86Code): the command with xz's BCJ filter. */
  codeCommand?: string[]
}

/*
 * The default: xz, with the x86 BCJ filter on the parts that are mostly executables.
 * Measured here (2 shared cores; Node 24.22.3 agent 104.1 MiB, kernel 6.1; 132.6 MiB of
 * cpio in 8 parts; unpack: 5 runs, native `zstd -dc`/`xz -dc`, and xz-embedded's
 * xzminidec, the decoder the kernel has in lib/xz; TCG: one boot, "Trying to unpack"
 * to "Freeing initrd memory" with initramfs_async=0):
 *                        size       native unpack   kernel's xz decoder   qemu TCG
 *   zstd -19             36.40 MiB  0.27-0.34 s     -                     2.9 s
 *   xz -9e               32.59 MiB  1.95-2.22 s     2.33-2.70 s           11.1 s
 *   xz -9e, BCJ on code  31.54 MiB  2.02-2.60 s     2.42-2.83 s           12.6 s
 * BCJ makes kernel modules (ET_REL: their call targets sit in relocations) 7-8% larger,
 * hence per part. zstd --ultra -22 saves only 0.4 MiB on the agent.
 * Every node fetches the initramfs by unicast, so zstd makes the server send N x 4.9 MiB
 * more; that outweighs xz's ~2.2 s of extra unpacking (on every node at once) past
 * N = 2.2 s x U_s / 4.9 MiB: about 50 nodes on 1 Gbit, 500 on 10 Gbit. We aim at hundreds
 * to thousands of nodes, and only xz fits the budget. zstd stays available
 * (INITRD_COMPRESS=zstd) for small fleets on fast links, where unpacking is the cost.
 */
export const DEFAULT_COMPRESSION = 'xz'

const COMPRESSION_FORMS = 'zstd[:LEVEL], xz[:LEVEL] or none'

export function parseCompression (text: string): Compression {
  const [kind, level] = text.split(':')
  if (level !== undefined && !/^\d{1,2}e?$/.test(level)) throw new OptionValueError(`${COMPRESSION_FORMS}, LEVEL a number with an optional e`)
  switch (kind) {
    // -T0: all cores; the frames stay ordinary ones the kernel decompresses.
    case 'zstd': return { name: `zstd -${level ?? '19'}`, command: ['zstd', `-${level ?? '19'}`, '-T0', '-q', '-c'] }
    case 'xz': {
      // The kernel's xz decoder checks only CRC32; one thread keeps one block (best
      // ratio). Its BCJ decoder for x86 is built in (CONFIG_XZ_DEC_X86, Debian's default).
      const preset = `--lzma2=preset=${level ?? '9e'}`
      const tail = ['--check=crc32', '-T1', '-c']
      return { name: `xz ${preset} (--x86 on code parts)`, command: ['xz', preset, ...tail], codeCommand: ['xz', '--x86', preset, ...tail] }
    }
    case 'none': return { name: 'none', command: [] }
    default: throw new OptionValueError(COMPRESSION_FORMS)
  }
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46])
const ELF_TYPE_OFFSET = 16
const ELF_MACHINE_OFFSET = 18
const ELF_EXECUTABLE = 2
const ELF_SHARED_OBJECT = 3
const ELF_MACHINE_X86_64 = 62

function isX86Executable (data: Buffer): boolean {
  if (data.length < ELF_MACHINE_OFFSET + 2 || !data.subarray(0, ELF_MAGIC.length).equals(ELF_MAGIC)) return false
  const type = data.readUInt16LE(ELF_TYPE_OFFSET)
  return (type === ELF_EXECUTABLE || type === ELF_SHARED_OBJECT) && data.readUInt16LE(ELF_MACHINE_OFFSET) === ELF_MACHINE_X86_64
}

/** More than half of the part's bytes are x86-64 executables or libraries (kernel modules are not). */
export function isMostlyX86Code (entries: Entry[]): boolean {
  let code = 0
  let all = 0
  for (const e of entries) {
    if (e.type !== 'file') continue
    all += e.data.length
    if (isX86Executable(e.data)) code += e.data.length
  }
  return code * 2 > all
}

/** Newest kernel with both its modules and its image installed. */
export async function defaultKernelVersion (): Promise<string> {
  let versions: string[] = []
  try { versions = await readdir(MODULES_ROOT) } catch { /* none installed */ }
  const usable: string[] = []
  for (const v of versions) {
    if (await exists(join(BOOT_DIR, `vmlinuz-${v}`))) usable.push(v)
  }
  usable.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
  const newest = usable.pop()
  if (newest === undefined) throw new SiError('ERR_INITRD', `no kernel found (${MODULES_ROOT}/V with ${BOOT_DIR}/vmlinuz-V): install linux-image-amd64`)
  return newest
}

async function exists (path: string): Promise<boolean> {
  try { await stat(path); return true } catch { return false }
}

async function readSource (path: string, what: string): Promise<Buffer> {
  try { return await readFile(resolve(REPO_ROOT, path)) } catch (err) {
    throw new SiError('ERR_INITRD', `${what} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (err as Error).message}`, { cause: err })
  }
}

async function run (cmd: string[], input?: Buffer): Promise<Buffer> {
  return await new Promise((resolvePromise, reject) => {
    const child = spawn(cmd[0], cmd.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    const timer = setTimeout(() => child.kill('SIGKILL'), TOOL_TIMEOUT_MS)
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    child.stdin.on('error', () => { /* reported through the exit status */ })
    child.on('error', e => { clearTimeout(timer); reject(new SiError('ERR_INITRD', `cannot run ${cmd[0]}: ${e.message}`, { cause: e })) })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolvePromise(Buffer.concat(out))
      else reject(new SiError('ERR_INITRD', `${cmd.join(' ')} failed (${signal ?? `exit ${code}`}): ${Buffer.concat(err).toString().trim().slice(0, 500)}`))
    })
    child.stdin.end(input)
  })
}

interface Part { name: string; entries: Entry[] }

class Layout {
  readonly parts = new Map<string, Part>()
  private readonly claimed = new Set<string>()

  add (partName: string, entry: Entry): void {
    const path = archivePath(entry.path)
    if (this.claimed.has(path)) return // first claim wins: listed items before busybox links
    this.claimed.add(path)
    let part = this.parts.get(partName)
    if (part === undefined) { part = { name: partName, entries: [] }; this.parts.set(partName, part) }
    part.entries.push({ ...entry, path })
  }

  has (path: string): boolean { return this.claimed.has(archivePath(path)) }
}

interface Notes { skipped: string[] }

/** The initramfs, and the tool bundle whose programs also use the initramfs's libraries. */
interface Layouts { initramfs: Layout; bundle: Layout }

function layoutOf (layouts: Layouts, item: Item): Layout {
  return item.bundle ? layouts.bundle : layouts.initramfs
}

async function addExec (layouts: Layouts, item: Extract<Item, { kind: 'exec' }>, notes: Notes): Promise<void> {
  let data: Buffer
  try { data = await readSource(item.source, 'executable') } catch (err) {
    if (item.optional) { notes.skipped.push(`${item.source} (optional, not found)`); return }
    throw err
  }
  const layout = layoutOf(layouts, item)
  layout.add(item.part, { type: 'file', path: item.dest, mode: 0o755, data })
  for (const lib of await sharedLibraries(resolve(REPO_ROOT, item.source))) {
    if (!layouts.initramfs.has(lib) && !layout.has(lib)) layout.add(LIBS_PART, { type: 'file', path: lib, mode: 0o755, data: await readFile(lib) })
  }
}

async function addBusybox (layout: Layout, item: Extract<Item, { kind: 'busybox' }>): Promise<string[]> {
  const data = await readSource(item.source, 'busybox')
  layout.add(item.part, { type: 'file', path: BUSYBOX_DEST, mode: 0o755, data })
  const list = (await run([resolve(REPO_ROOT, item.source), '--list-full'])).toString().split('\n').filter(l => l !== '')
  return list
}

/** Adds the modules the items name (with their closure) but not those `taken` already; returns the added paths. */
async function addModules (layout: Layout, index: ModuleIndex, version: string, items: Array<Extract<Item, { kind: 'module' }>>, notes: Notes, taken: Set<string>): Promise<string[]> {
  const all: string[] = []
  for (const part of [...new Set(items.map(i => i.part))]) {
    const names = items.filter(i => i.part === part)
    const selection = selectModules(index, names.map(i => i.name))
    for (const name of selection.builtin) notes.skipped.push(`module ${name} (built into the kernel)`)
    for (const name of selection.missing) {
      if (names.find(i => i.name === name)?.optional === true) notes.skipped.push(`module ${name} (optional, not in ${version})`)
      else throw new SiError('ERR_INITRD', `kernel ${version} has no module ${name}`)
    }
    for (const path of selection.paths.filter(p => !taken.has(p))) {
      taken.add(path)
      all.push(path)
      const source = join(index.dir, path)
      const decompress = moduleDecompressor(path)
      const data = decompress === undefined ? await readFile(source) : await run([...decompress, source])
      layout.add(part, { type: 'file', path: join('lib/modules', version, plainModulePath(path)), mode: 0o644, data })
    }
  }
  return all
}

export interface BuildOptions {
  contents: string[]
  kernelVersion?: string
  compression: Compression
  output: string
  kernelOutput?: string
  /** where the tool bundle's tree is written (needed when the list has bundle parts) */
  bundleOutput?: string
  mtime: number
  /** Compressed parts of the last build, reused when unchanged (default DEFAULT_CACHE_DIR). */
  cacheDir?: string
  /** The repository's public key, baked in: the agent then trusts it without being told. */
  trustedKey?: string
  /** bundle (default): the parts marked bundle make the tool bundle; inside: they go into the initramfs */
  tools?: ToolsPlacement
}

export const TOOLS_PLACEMENTS = ['bundle', 'inside'] as const
export type ToolsPlacement = typeof TOOLS_PLACEMENTS[number]

export interface PartReport { name: string; files: number; bytes: number; compressedBytes: number; cached: boolean; codeFilter: boolean }

/** The tool bundle: a tree to add as image `name`; its parts are counted unpacked (the repository compresses it). */
export interface BundleReport { name: string; dir: string; parts: Array<Pick<PartReport, 'name' | 'files' | 'bytes'>>; bytes: number }

export interface BuildReport { output: string; kernelVersion: string; compression: string; parts: PartReport[]; totalBytes: number; skipped: string[]; bundle?: BundleReport }

export async function buildInitrd (opts: BuildOptions): Promise<BuildReport> {
  const listed: Item[] = []
  for (const file of opts.contents) listed.push(...parseContents((await readSource(file, 'contents list')).toString('utf8'), file))
  // Tools inside: the bundle's parts go into the initramfs too, and no bundle is made.
  const items = opts.tools === 'inside' ? listed.map(i => ({ ...i, bundle: false })) : listed
  const kernelVersion = opts.kernelVersion ?? await defaultKernelVersion()
  const layouts: Layouts = { initramfs: new Layout(), bundle: new Layout() }
  const { initramfs, bundle } = layouts
  const notes: Notes = { skipped: [] }
  for (const dev of EARLY_DEVICES) initramfs.add(BASE_PART, dev)
  for (const dir of EMPTY_DIRS) initramfs.add(BASE_PART, { type: 'dir', path: dir, mode: dir === 'tmp' ? 0o1777 : 0o755 })
  if (opts.trustedKey !== undefined) {
    if (!isPublicKeyText(opts.trustedKey)) throw new SiError('ERR_INITRD', `trusted key ${JSON.stringify(opts.trustedKey)}: expected ${PUBLIC_KEY_RULE}`)
    initramfs.add(BASE_PART, { type: 'file', path: BAKED_TRUSTED_KEY_FILE, mode: 0o644, data: Buffer.from(`${opts.trustedKey}\n`) })
  }

  let busyboxApplets: string[] = []
  const busyboxPart = items.find(i => i.kind === 'busybox')?.part ?? BASE_PART
  // The initramfs first: the bundle's programs use its libraries rather than bring their own.
  for (const item of [...items.filter(i => !i.bundle), ...items.filter(i => i.bundle)]) {
    const layout = layoutOf(layouts, item)
    if (item.kind === 'busybox') {
      if (item.bundle) throw new SiError('ERR_INITRD', `busybox is /init's shell: it belongs in an initramfs part, not in bundle part ${item.part}`)
      busyboxApplets = await addBusybox(initramfs, item)
    } else if (item.kind === 'exec') await addExec(layouts, item, notes)
    else if (item.kind === 'symlink') layout.add(item.part, { type: 'symlink', path: item.dest, target: item.target })
    else if (item.kind === 'file') {
      let data: Buffer
      try { data = await readSource(item.source, 'file') } catch (err) {
        if (item.optional) { notes.skipped.push(`${item.source} (optional, not found)`); continue }
        throw err
      }
      const mode = item.mode ?? ((await stat(resolve(REPO_ROOT, item.source))).mode & 0o7777)
      layout.add(item.part, { type: 'file', path: item.dest, mode, data })
    }
  }
  const moduleItems = items.filter((i): i is Extract<Item, { kind: 'module' }> => i.kind === 'module')
  if (moduleItems.length > 0) {
    const index = await loadModuleIndex(join(MODULES_ROOT, kernelVersion))
    const taken = new Set<string>()
    const inInitramfs = await addModules(initramfs, index, kernelVersion, moduleItems.filter(i => !i.bundle), notes, taken)
    const inBundle = await addModules(bundle, index, kernelVersion, moduleItems.filter(i => i.bundle), notes, taken)
    const dir = join('lib/modules', kernelVersion)
    const addIndex = (layout: Layout, part: string, chosen: string[]): void => {
      const files = indexFiles(index, chosen)
      layout.add(part, { type: 'file', path: join(dir, 'modules.dep'), mode: 0o644, data: Buffer.from(files.dep) })
      layout.add(part, { type: 'file', path: join(dir, 'modules.alias'), mode: 0o644, data: Buffer.from(files.alias) })
    }
    addIndex(initramfs, BASE_PART, inInitramfs)
    // Laid over the initramfs's index once the bundle is in: it knows every module of both.
    if (inBundle.length > 0) addIndex(bundle, BUNDLE_INDEX_PART, [...inInitramfs, ...inBundle])
  }
  // Applet links last: anything the list names explicitly replaces busybox's version.
  for (const applet of busyboxApplets) {
    if (archivePath(applet) !== BUSYBOX_DEST) initramfs.add(busyboxPart, { type: 'symlink', path: applet, target: `/${BUSYBOX_DEST}` })
  }

  const bundleName = bundle.parts.size > 0 ? toolBundleName(kernelVersion) : undefined
  if (bundleName !== undefined && opts.bundleOutput === undefined) throw new SiError('ERR_INITRD', `parts ${[...bundle.parts.keys()].join(', ')} go into the tool bundle: give the directory to write it to (--bundle-output)`)
  if (bundleName !== undefined) initramfs.add(BASE_PART, { type: 'file', path: TOOL_BUNDLE_NAME_FILE, mode: 0o644, data: Buffer.from(`${bundleName}\n`) })

  const parts = partsInOrder(initramfs)
  const segments = await mapLimited(parts, availableParallelism(), p => compressPart(p, opts))
  await mkdir(dirname(resolve(REPO_ROOT, opts.output)), { recursive: true })
  const tmp = resolve(REPO_ROOT, `${opts.output}.tmp${process.pid}`)
  await writeFile(tmp, Buffer.concat(segments.map(s => s.data)))
  await rename(tmp, resolve(REPO_ROOT, opts.output))
  if (opts.compression.command.length > 0) await pruneCache(opts.cacheDir ?? DEFAULT_CACHE_DIR, new Set(segments.map(s => s.cacheFile).filter((f): f is string => f !== undefined)))
  if (opts.kernelOutput !== undefined) await copyFile(join(BOOT_DIR, `vmlinuz-${kernelVersion}`), resolve(REPO_ROOT, opts.kernelOutput))
  let bundleReport: BundleReport | undefined
  if (bundleName !== undefined && opts.bundleOutput !== undefined) {
    const dir = opts.bundleOutput
    const bundleParts = partsInOrder(bundle)
    await writeTree(resolve(REPO_ROOT, dir), bundleParts.flatMap(p => p.entries), opts.mtime)
    const counted = bundleParts.map(p => ({ name: p.name, files: countFiles(p.entries), bytes: countBytes(p.entries) }))
    bundleReport = { name: bundleName, dir, parts: counted, bytes: counted.reduce((n, p) => n + p.bytes, 0) }
  } else if (opts.bundleOutput !== undefined) {
    // No bundle this time (tools inside): a bundle left by an earlier build must not be added by mistake.
    await rm(resolve(REPO_ROOT, opts.bundleOutput), { recursive: true, force: true })
  }
  return {
    output: opts.output,
    kernelVersion,
    compression: opts.compression.name,
    parts: segments.map(s => s.report),
    totalBytes: segments.reduce((n, s) => n + s.data.length, 0),
    skipped: notes.skipped,
    ...(bundleReport !== undefined ? { bundle: bundleReport } : {})
  }
}

function partsInOrder (layout: Layout): Part[] {
  const order = [BASE_PART, ...[...layout.parts.keys()].filter(n => n !== BASE_PART)]
  return order.map(n => layout.parts.get(n)).filter((p): p is Part => p !== undefined)
}

function countFiles (entries: Entry[]): number { return entries.filter(e => e.type === 'file').length }
function countBytes (entries: Entry[]): number { return entries.reduce((n, e) => n + (e.type === 'file' ? e.data.length : 0), 0) }

async function compressPart (part: Part, opts: BuildOptions): Promise<{ data: Buffer; report: PartReport; cacheFile?: string }> {
  const archive = newcArchive(part.entries, { mtime: opts.mtime })
  const files = countFiles(part.entries)
  const bytes = countBytes(part.entries)
  if (opts.compression.command.length === 0) return { data: archive, report: { name: part.name, files, bytes, compressedBytes: archive.length, cached: false, codeFilter: false } }
  const codeFilter = opts.compression.codeCommand !== undefined && isMostlyX86Code(part.entries)
  const command = codeFilter ? opts.compression.codeCommand as string[] : opts.compression.command
  const key = createHash('sha256').update(command.join(' ')).update('\0').update(archive).digest('hex')
  const cached = resolve(REPO_ROOT, opts.cacheDir ?? DEFAULT_CACHE_DIR, `${key}.seg`)
  let data: Buffer | undefined
  try { data = await readFile(cached) } catch { /* not cached */ }
  const hit = data !== undefined
  if (data === undefined) {
    data = await run(command, archive)
    await mkdir(dirname(cached), { recursive: true })
    await writeFile(`${cached}.tmp${process.pid}`, data)
    await rename(`${cached}.tmp${process.pid}`, cached)
  }
  return { data, report: { name: part.name, files, bytes, compressedBytes: data.length, cached: hit, codeFilter }, cacheFile: cached }
}

/** Keeps the cache to the last build's segments: each agent build leaves a new 20+ MiB one. */
async function pruneCache (cacheDir: string, keep: Set<string>): Promise<void> {
  const dir = resolve(REPO_ROOT, cacheDir)
  let names: string[] = []
  try { names = await readdir(dir) } catch { return }
  await Promise.all(names.filter(n => n.endsWith('.seg') && !keep.has(join(dir, n))).map(n => rm(join(dir, n), { force: true })))
}

async function mapLimited<T, R> (items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i])
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker))
  return results
}

export function formatReport (r: BuildReport): string {
  const mib = (n: number): string => (n / MiB).toFixed(2).padStart(8)
  const lines = [`initramfs ${r.output}: kernel ${r.kernelVersion}, ${r.compression}`, `  ${'part'.padEnd(16)} ${'files'.padStart(5)} ${'MiB'.padStart(8)} ${'packed'.padStart(8)}`]
  for (const p of r.parts) lines.push(`  ${p.name.padEnd(16)} ${String(p.files).padStart(5)} ${mib(p.bytes)} ${mib(p.compressedBytes)}${p.codeFilter ? '  x86 filter' : ''}${p.cached ? '  (cached)' : ''}`)
  const raw = r.parts.reduce((n, p) => n + p.bytes, 0)
  lines.push(`  ${'total'.padEnd(16)} ${String(r.parts.reduce((n, p) => n + p.files, 0)).padStart(5)} ${mib(raw)} ${mib(r.totalBytes)}`)
  lines.push(`  budget ${BUDGET_BYTES / MiB} MiB compressed: ${r.totalBytes <= BUDGET_BYTES ? 'within' : 'OVER'} (${(100 * r.totalBytes / BUDGET_BYTES).toFixed(0)}%)`)
  if (r.bundle !== undefined) {
    lines.push(`tool bundle ${r.bundle.dir}: image ${r.bundle.name}, fetched by the agent through the swarm`)
    lines.push(`  ${'part'.padEnd(16)} ${'files'.padStart(5)} ${'MiB'.padStart(8)}`)
    for (const p of r.bundle.parts) lines.push(`  ${p.name.padEnd(16)} ${String(p.files).padStart(5)} ${mib(p.bytes)}`)
    lines.push(`  ${'total'.padEnd(16)} ${String(r.bundle.parts.reduce((n, p) => n + p.files, 0)).padStart(5)} ${mib(r.bundle.bytes)}`)
    lines.push(`  add it: si-server image add ${r.bundle.name} --from ${r.bundle.dir}`)
  }
  for (const s of r.skipped) lines.push(`  skipped: ${s}`)
  return lines.join('\n') + '\n'
}

async function contentsFiles (given: string[] | undefined): Promise<string[]> {
  if (given !== undefined && given.length > 0) return given
  let extra: string[] = []
  try { extra = (await readdir(resolve(REPO_ROOT, CONTENTS_DIR))).filter(f => f.endsWith('.txt')).sort().map(f => join(CONTENTS_DIR, f)) } catch { /* no site additions */ }
  return [DEFAULT_CONTENTS, ...extra]
}

const BUILD_OPTIONS = {
  contents: listOption({ flag: 'contents', arg: 'FILE', help: `a contents list (repeatable); default ${DEFAULT_CONTENTS} and every .txt in ${CONTENTS_DIR}/`, parseItem: nonEmpty('a file') }),
  kernelVersion: option({ flag: 'kernel-version', arg: 'V', help: 'the kernel whose modules are packed', defaultText: 'the newest under /lib/modules', parse: nonEmpty('a kernel version') }),
  compression: option({ flag: 'compress', arg: 'zstd[:N]|xz[:N]|none', env: 'INITRD_COMPRESS', help: 'how the parts are compressed', default: DEFAULT_COMPRESSION, parse: (text: string) => { parseCompression(text); return text } }),
  output: option({ flag: 'output', arg: 'FILE', help: 'the initramfs', default: DEFAULT_OUTPUT, parse: nonEmpty('a file') }),
  kernelOutput: option({ flag: 'kernel-output', arg: 'FILE', help: 'where the kernel is copied', default: DEFAULT_KERNEL_OUTPUT, parse: nonEmpty('a file') }),
  sourceDateEpoch: option({ flag: 'source-date-epoch', arg: 'SECONDS', env: 'SOURCE_DATE_EPOCH', help: 'the time stamp of every file (reproducible builds)', default: 0, parse: integer(0, 2 ** 40) }),
  trustedKey: option({ flag: 'trusted-key', arg: 'KEY', help: `the repository's public key (si-server key show), baked in as ${BAKED_TRUSTED_KEY_FILE}: the agent then uses only what it signed (make initrd TRUSTED_KEY=)`, parse: parseTrustedKey }),
  tools: option({ flag: 'tools', arg: 'bundle|inside', env: 'INITRD_TOOLS', help: 'bundle: the parts marked bundle make the tool bundle, which the agent fetches through the swarm; inside: they go into the initramfs (offline or small sites; make initrd TOOLS=inside)', default: 'bundle' as ToolsPlacement, parse: oneOf<ToolsPlacement>(TOOLS_PLACEMENTS) }),
  bundleOutput: option({ flag: 'bundle-output', arg: 'DIR', help: 'where the tool bundle\'s tree is written, for si-server image add', default: DEFAULT_BUNDLE_OUTPUT, parse: nonEmpty('a directory') }),
  manifest: option({ flag: 'manifest', arg: 'FILE', help: 'the build\'s report as JSON (parts, sizes, the bundle\'s image name): the e2e runs read it', default: DEFAULT_MANIFEST, parse: nonEmpty('a file') })
}

const USAGE = commandHelp(['node --import tsx initrd/build.ts [options]   (make initrd runs it)'], BUILD_OPTIONS, {
  intro: 'Packs the agent, busybox, /init and the listed files and modules into a BOEL-style initramfs, and the parts marked bundle into the tool bundle (a tree for si-server image add).'
})

async function main (argv: string[]): Promise<void> {
  const { values: o, positional, help } = readCommandLine(argv, BUILD_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(USAGE); return }
  noExtraPositionals(positional, 0, USAGE)
  const started = Date.now()
  const report = await buildInitrd({
    contents: await contentsFiles(o.contents),
    kernelVersion: o.kernelVersion,
    compression: parseCompression(o.compression),
    output: o.output,
    kernelOutput: o.kernelOutput,
    mtime: o.sourceDateEpoch,
    trustedKey: o.trustedKey,
    tools: o.tools,
    bundleOutput: o.bundleOutput
  })
  await writeFile(resolve(REPO_ROOT, o.manifest), JSON.stringify(report, null, 2) + '\n')
  process.stdout.write(formatReport(report))
  process.stdout.write(`built in ${((Date.now() - started) / 1000).toFixed(1)} s; kernel: ${o.kernelOutput}\n`)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch(err => {
    process.stderr.write(`initrd/build.ts: error: ${describeError(err)}\n`)
    process.exitCode = 1
  })
}
