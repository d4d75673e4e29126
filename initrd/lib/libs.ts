// Shared libraries an executable needs, as the dynamic loader resolves them (ldd), so
// that programs copied from the build machine run in the initramfs.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { SiError } from '../../src/errors.ts'

const LDD_TIMEOUT_MS = 30_000

/** Absolute paths of the libraries (and the loader) in ldd's output. */
export function parseLdd (output: string): string[] {
  const libs: string[] = []
  for (const line of output.split('\n')) {
    const arrow = /=>\s*(\/\S+)/.exec(line)
    const bare = /^\s*(\/\S+)\s+\(0x/.exec(line)
    const path = arrow?.[1] ?? bare?.[1]
    if (path !== undefined) libs.push(path)
    else if (/=>\s*not found/.test(line)) throw new SiError('ERR_INITRD', `a library is missing: ${line.trim()}`)
  }
  return libs
}

/** [] for a static executable. */
export async function sharedLibraries (executable: string): Promise<string[]> {
  try {
    const { stdout } = await promisify(execFile)('ldd', [executable], { encoding: 'utf8', timeout: LDD_TIMEOUT_MS })
    return parseLdd(stdout)
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string }
    // ldd exits 1 with "not a dynamic executable" for static programs.
    if (/not a dynamic executable|statically linked/.test(`${e.stdout ?? ''}${e.stderr ?? ''}`)) return []
    if (e.code === 'ENOENT') throw new SiError('ERR_INITRD', 'ldd not found (install libc-bin)')
    throw new SiError('ERR_INITRD', `ldd ${executable} failed: ${(e.stderr ?? String(err)).trim()}`, { cause: err })
  }
}
