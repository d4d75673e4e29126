// Network namespaces owned by one harness process. Every name starts with
// `sibench-<pid>-` (or the prefix `--ns-prefix` gives), so a later run can tell leftovers of a dead run (pid gone) from a
// run still going, and sweep only the former.
import { run } from './exec.ts'

export const DEFAULT_NS_PREFIX = 'sibench-'
/** Several people benchmarking on one machine each give their runs a prefix of their own (`--ns-prefix`). */
let nsPrefix = DEFAULT_NS_PREFIX

export function setNsPrefix (prefix: string): void {
  nsPrefix = prefix
}

export function currentNsPrefix (): string { return nsPrefix }

export function nsPrefixFor (pid = process.pid): string {
  return `${nsPrefix}${pid}-`
}

function pidOf (name: string): number | undefined {
  if (!name.startsWith(nsPrefix)) return undefined
  const m = /^(\d+)-/.exec(name.slice(nsPrefix.length))
  return m === null ? undefined : Number(m[1])
}

export async function listNamespaces (): Promise<string[]> {
  const out = await run('ip', ['netns', 'list'])
  // Lines look like "name" or "name (id: 3)".
  return out.split('\n').map(l => l.trim().split(/\s+/)[0]).filter(n => n !== undefined && n !== '')
}

export async function createNamespace (name: string): Promise<void> {
  await run('ip', ['netns', 'add', name])
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
}

export async function deleteNamespace (name: string): Promise<void> {
  await run('ip', ['netns', 'del', name], { allowFail: true })
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Removes namespaces left by harness runs whose process is gone; returns their names. */
export async function sweepStaleNamespaces (): Promise<string[]> {
  const stale = (await listNamespaces()).filter(name => {
    const pid = pidOf(name)
    return pid !== undefined && pid !== process.pid && !alive(pid)
  })
  for (const name of stale) await deleteNamespace(name)
  return stale
}

/** Namespaces of this process still present (for the cleanup check). */
export async function ownNamespaces (): Promise<string[]> {
  const prefix = nsPrefixFor()
  return (await listNamespaces()).filter(n => n.startsWith(prefix))
}

/** argv that runs a command inside a namespace. */
export function inNamespace (ns: string, cmd: string, args: string[]): [string, string[]] {
  return ['ip', ['netns', 'exec', ns, cmd, ...args]]
}
