// The versions the server serves, images and overrides, as the repository holds them,
// looked at every few seconds: the seeder seeds these, the tracker tracks these only, and
// a version that disappears (`si-server image rm` or `override rm` runs in another
// process) is remembered as removed, so that the agents fetching it are told so at once
// instead of stalling.
import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import { describeError } from '../errors.ts'
import { withDefaults } from '../config/defaults.ts'
import { parseImageRef } from '../formats/image-ref.ts'
import { collectionNoun, type Collection } from '../formats/image-statement.ts'
import type { ImageRepository, ImageVersion } from '../image/repository.ts'
import type { ServedTorrents, TorrentStatus } from '../tracker/tracker.ts'

export interface CatalogueConfig {
  /** ms between looks at the repository for versions added or removed. */
  rescanIntervalMs: number
  /**
   * ms: a look asked for between scans (the tracker heard of a hash it does not know: a
   * version added a moment ago) waits for this long after the last one. Anyone can send
   * unknown hashes, and each look lists the repository.
   */
  minRefreshIntervalMs: number
  /** Removed versions remembered (the oldest are forgotten): enough for any deployment's span. */
  maxRemembered: number
}

export const DEFAULT_CATALOGUE_CONFIG: Readonly<CatalogueConfig> = Object.freeze({
  rescanIntervalMs: 3_000,
  minRefreshIntervalMs: 1_000,
  maxRemembered: 1024
})

/** A version served, with the collection it is in. */
export interface ServedVersion extends ImageVersion { collection: Collection }

/** One collection the server serves, and the repository that holds it. */
export interface ServedCollection { collection: Collection; repo: ImageRepository }

export interface CatalogueEvents {
  /** the served versions changed: `added` are new, `removed` are gone from the repository */
  changed: [added: ServedVersion[], removed: ServedVersion[]]
  /** the repository could not be listed (the last listing still holds) */
  warning: [err: Error]
}

export class ImageCatalogue extends EventEmitter<CatalogueEvents> implements ServedTorrents {
  readonly config: Readonly<CatalogueConfig>
  private readonly collections: ServedCollection[]
  /** by collection and info hash (hex): an image and an override may share a payload */
  private readonly current = new Map<string, ServedVersion>()
  /** by collection and info hash (hex), the oldest removal first */
  private readonly removed = new Map<string, ServedVersion>()
  private scanning: Promise<void> | undefined
  private lastScanAt = -Infinity
  private timer: NodeJS.Timeout | undefined

  /** `repo`: the images alone, or every collection served (images and overrides). */
  constructor (repo: ImageRepository | ServedCollection[], config?: Partial<CatalogueConfig>) {
    super()
    this.collections = Array.isArray(repo) ? repo : [{ collection: 'images', repo }]
    this.config = withDefaults(DEFAULT_CATALOGUE_CONFIG, config)
  }

  /** The first look (awaited), then one every rescanIntervalMs. */
  async start (): Promise<void> {
    await this.rescan()
    this.timer = setInterval(() => { void this.rescan() }, this.config.rescanIntervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.scanning
  }

  /** The versions served, of every collection or of one. */
  versions (collection?: Collection): ServedVersion[] {
    return [...this.current.values()].filter(v => collection === undefined || v.collection === collection)
  }

  status (infoHashHex: string): TorrentStatus {
    if (this.collections.some(c => this.current.has(keyOf(c.collection, infoHashHex)))) return { served: true }
    const gone = this.collections.map(c => this.removed.get(keyOf(c.collection, infoHashHex))).find(v => v !== undefined)
    return gone === undefined ? { served: false } : { served: false, removed: describeServed(gone) }
  }

  /** Whether versions of this reference were served and are gone, none being left to serve in their place. */
  wasRemoved (ref: string, collection: Collection = 'images'): boolean {
    const { name, version } = parseImageRef(ref)
    const matches = (v: ServedVersion): boolean => v.collection === collection && v.name === name && (version === undefined || v.version === version)
    return [...this.removed.values()].some(matches) && ![...this.current.values()].some(matches)
  }

  /** A look asked for between scans, no sooner than minRefreshIntervalMs after the last. */
  async refresh (): Promise<void> {
    if (this.scanning !== undefined) return await this.scanning
    if (performance.now() - this.lastScanAt < this.config.minRefreshIntervalMs) return
    await this.rescan()
  }

  /** Lists the repository (one listing at a time) and reports what changed. */
  rescan (): Promise<void> {
    if (this.scanning === undefined) {
      this.scanning = this.scan().finally(() => { this.scanning = undefined })
    }
    return this.scanning
  }

  private async scan (): Promise<void> {
    this.lastScanAt = performance.now()
    const listed: ServedVersion[] = []
    try {
      for (const { collection, repo } of this.collections) {
        for (const v of await repo.list()) listed.push({ ...v, collection })
      }
    } catch (err) {
      this.emit('warning', err instanceof Error ? err : new Error(describeError(err)))
      return
    }
    const present = new Map(listed.map(v => [keyOf(v.collection, v.infoHashHex), v]))
    const removed: ServedVersion[] = []
    for (const [key, version] of this.current) {
      if (present.has(key)) continue
      this.current.delete(key)
      this.remember(key, version)
      removed.push(version)
    }
    const added: ServedVersion[] = []
    for (const [key, version] of present) {
      if (this.current.has(key)) continue
      this.current.set(key, version)
      this.removed.delete(key)
      added.push(version)
    }
    if (added.length > 0 || removed.length > 0) this.emit('changed', added, removed)
  }

  private remember (key: string, version: ServedVersion): void {
    this.removed.delete(key)
    this.removed.set(key, version)
    while (this.removed.size > this.config.maxRemembered) {
      this.removed.delete(this.removed.keys().next().value as string)
    }
  }
}

function keyOf (collection: Collection, infoHashHex: string): string {
  return `${collection}/${infoHashHex}`
}

/** "NAME@N" for an image, "override NAME@N" for an override: the tracker tells agents "image ... was removed". */
export function describeServed (v: ServedVersion): string {
  return `${v.collection === 'images' ? '' : `${collectionNoun(v.collection)} `}${v.name}@${v.version}`
}
