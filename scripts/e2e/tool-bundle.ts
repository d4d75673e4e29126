// The tool bundle in the e2e runs: `make initrd` writes its tree (dist/tools) and names
// it in dist/initrd.json; the runs add it to their repository as an image, as an
// administrator would (docs/PXE.md), so the VMs' agents fetch it through the swarm.
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { DEFAULT_MANIFEST, type BuildReport } from '../../initrd/build.ts'
import { must } from './proc.ts'

const IMAGE_ADD_TIMEOUT_MS = 5 * 60_000

export interface BuiltBundle { name: string; dir: string }

/** The bundle the last `make initrd` made; undefined when it put the tools inside the initramfs. */
export async function builtToolBundle (root: string): Promise<BuiltBundle | undefined> {
  const manifest = join(root, DEFAULT_MANIFEST)
  let report: BuildReport
  try { report = JSON.parse(await readFile(manifest, 'utf8')) as BuildReport } catch (err) {
    throw new Error(`${manifest}: ${(err as Error).message} (run make initrd)`)
  }
  return report.bundle === undefined ? undefined : { name: report.bundle.name, dir: resolve(root, report.bundle.dir) }
}

/** `si-server image add NAME --from dist/tools`: the bundle becomes an image the server seeds. */
export function addToolBundle (siServer: string, repo: string, bundle: BuiltBundle): void {
  must([siServer, 'image', 'add', bundle.name, '--from', bundle.dir, '--repo', repo], undefined, IMAGE_ADD_TIMEOUT_MS)
}
