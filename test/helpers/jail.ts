// The layout hostile-archive tests extract into: a target, an empty directory beside it
// that must stay empty, and a victim file whose link count shows any hardlink made to it.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Jail { base: string; target: string; outside: string; victim: string }

export async function makeJail (t: { after(fn: () => Promise<void>): void }): Promise<Jail> {
  const base = await mkdtemp(join(tmpdir(), 'si-hostile-'))
  t.after(() => rm(base, { recursive: true, force: true }))
  const jail = { base, target: join(base, 'target'), outside: join(base, 'outside'), victim: join(base, 'victim') }
  await mkdir(jail.target)
  await mkdir(jail.outside)
  await mkdir(jail.victim)
  await writeFile(join(jail.victim, 'file'), 'victim')
  return jail
}
