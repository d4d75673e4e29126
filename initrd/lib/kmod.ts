// Kernel modules for the initramfs: the closure of the modules asked for over
// modules.dep (hard dependencies) and modules.softdep (e.g. ext4 needs crc32c at mount
// time), plus the slices of modules.dep and modules.alias that busybox modprobe needs
// to load them by name or by a device's modalias.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../../src/errors.ts'

const MODULE_SUFFIX = /\.ko(\.(xz|zst|gz))?$/

export interface ModuleIndex {
  dir: string
  /** normalized name -> path relative to dir, as modules.dep has it */
  paths: Map<string, string>
  /** path -> paths it needs */
  deps: Map<string, string[]>
  /** alias pattern -> module names */
  aliases: Array<{ pattern: string; module: string }>
  /** module -> names from softdep pre:/post: (module names or aliases) */
  softdeps: Map<string, string[]>
  builtin: Set<string>
}

/** modprobe treats - and _ alike in module names. */
export function normalize (name: string): string {
  return name.replace(/-/g, '_')
}

export function moduleName (path: string): string {
  return normalize((path.split('/').pop() ?? path).replace(MODULE_SUFFIX, ''))
}

/** The parsing half, on file contents, so that tests can feed made-up indexes. */
export function parseModuleIndex (dir: string, files: { dep: string; alias: string; softdep: string; builtin: string }): ModuleIndex {
  const paths = new Map<string, string>()
  const deps = new Map<string, string[]>()
  for (const line of files.dep.split('\n')) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const path = line.slice(0, colon).trim()
    paths.set(moduleName(path), path)
    deps.set(path, line.slice(colon + 1).trim().split(/\s+/).filter(p => p !== ''))
  }
  const aliases: ModuleIndex['aliases'] = []
  for (const line of files.alias.split('\n')) {
    const m = /^alias\s+(\S+)\s+(\S+)/.exec(line)
    if (m !== null) aliases.push({ pattern: m[1], module: normalize(m[2]) })
  }
  const softdeps = new Map<string, string[]>()
  for (const line of files.softdep.split('\n')) {
    const m = /^softdep\s+(\S+)\s+(.*)$/.exec(line)
    if (m === null) continue
    const names = m[2].split(/\s+/).filter(w => w !== '' && w !== 'pre:' && w !== 'post:')
    softdeps.set(normalize(m[1]), [...(softdeps.get(normalize(m[1])) ?? []), ...names])
  }
  const builtin = new Set(files.builtin.split('\n').filter(l => l.trim() !== '').map(moduleName))
  return { dir, paths, deps, aliases, softdeps, builtin }
}

export async function loadModuleIndex (dir: string): Promise<ModuleIndex> {
  const read = async (name: string, required: boolean): Promise<string> => {
    try { return await readFile(join(dir, name), 'utf8') } catch (err) {
      if (!required) return ''
      throw new SiError('ERR_INITRD', `cannot read ${join(dir, name)}: ${(err as Error).message} (is the kernel's linux-image package installed?)`, { cause: err })
    }
  }
  return parseModuleIndex(dir, {
    dep: await read('modules.dep', true),
    alias: await read('modules.alias', false),
    softdep: await read('modules.softdep', false),
    builtin: await read('modules.builtin', false)
  })
}

/** Module names a name stands for: itself, or every module an exact alias points to. */
function resolveName (index: ModuleIndex, name: string): string[] {
  const n = normalize(name)
  if (index.paths.has(n)) return [n]
  return [...new Set(index.aliases.filter(a => a.pattern === name || a.pattern === n).map(a => a.module))].filter(m => index.paths.has(m))
}

export interface ModuleSelection {
  /** module paths relative to the index dir, dependencies first */
  paths: string[]
  builtin: string[]
  missing: string[]
}

export function selectModules (index: ModuleIndex, names: string[]): ModuleSelection {
  const chosen: string[] = []
  const seen = new Set<string>()
  const builtin: string[] = []
  const missing: string[] = []
  const visitPath = (path: string): void => {
    if (seen.has(path)) return
    seen.add(path)
    for (const dep of index.deps.get(path) ?? []) visitPath(dep)
    chosen.push(path)
    for (const soft of index.softdeps.get(moduleName(path)) ?? []) {
      for (const m of resolveName(index, soft)) visitPath(index.paths.get(m) as string)
    }
  }
  for (const name of names) {
    const modules = resolveName(index, name)
    if (modules.length === 0) {
      if (index.builtin.has(normalize(name))) builtin.push(name); else missing.push(name)
      continue
    }
    for (const m of modules) visitPath(index.paths.get(m) as string)
  }
  return { paths: chosen, builtin, missing }
}

/** modules.dep and modules.alias restricted to the chosen modules (and with .ko names). */
export function indexFiles (index: ModuleIndex, chosen: string[]): { dep: string; alias: string } {
  const set = new Set(chosen)
  const plain = (p: string): string => p.replace(MODULE_SUFFIX, '.ko')
  const dep = chosen.map(p => `${plain(p)}: ${(index.deps.get(p) ?? []).filter(d => set.has(d)).map(plain).join(' ')}`.trimEnd()).join('\n') + '\n'
  const names = new Set(chosen.map(moduleName))
  const alias = index.aliases.filter(a => names.has(a.module)).map(a => `alias ${a.pattern} ${a.module}`).join('\n') + '\n'
  return { dep, alias }
}

export function plainModulePath (path: string): string {
  return path.replace(MODULE_SUFFIX, '.ko')
}

/** The decompressor for a compressed module, or undefined for a plain .ko. */
export function moduleDecompressor (path: string): string[] | undefined {
  const m = MODULE_SUFFIX.exec(path)
  switch (m?.[2]) {
    case 'xz': return ['xz', '-dc']
    case 'zst': return ['zstd', '-dcq']
    case 'gz': return ['gzip', '-dc']
    default: return undefined
  }
}
