// Names the fleet view shows that the nodes do not send: a node's group (the plans'
// groups.conf) and its image as NAME@VERSION (from the info hash it reports). Both are
// answered at once from a cache refreshed in the background, so a report never waits
// on the disk; a name not yet known appears with the node's next report.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ImageRepository } from '../image/repository.ts'
import { GROUPS_FILE, groupOf, parseGroups, type GroupRule } from './plans.ts'

/** How stale a cache may get before a lookup refreshes it (edits to groups.conf, new images). */
const REFRESH_AFTER_MS = 5_000

/** Runs `load` in the background at most every REFRESH_AFTER_MS; the last value serves meanwhile. */
class BackgroundCache<T> {
  private loadedAt = -Infinity
  private loading = false

  constructor (private value: T, private readonly load: () => Promise<T>, private readonly now: () => number = Date.now) {}

  get (): T {
    if (!this.loading && this.now() - this.loadedAt >= REFRESH_AFTER_MS) {
      this.loading = true
      this.loadedAt = this.now()
      this.load().then(v => { this.value = v }, () => { /* keep the last good value */ }).finally(() => { this.loading = false })
    }
    return this.value
  }
}

export class GroupLookup {
  private readonly rules: BackgroundCache<GroupRule[]>

  constructor (plansDir: string) {
    const file = join(plansDir, GROUPS_FILE)
    this.rules = new BackgroundCache<GroupRule[]>([], async () => {
      try { return parseGroups(await readFile(file, 'utf8'), file) } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
        throw err
      }
    })
  }

  groupOf (node: string, macs: string[]): string | undefined {
    return groupOf(this.rules.get(), node, macs)
  }
}

export class ImageNames {
  private readonly names: BackgroundCache<Map<string, string>>

  constructor (repo: ImageRepository) {
    this.names = new BackgroundCache(new Map(), async () => new Map((await repo.list()).map(v => [v.infoHashHex, `${v.name}@${v.version}`])))
  }

  imageOf (infoHashHex: string): string | undefined {
    return this.names.get().get(infoHashHex)
  }
}
