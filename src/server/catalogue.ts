// The image versions the server serves, as the repository holds them, looked at every few
// seconds: the seeder seeds these, the tracker tracks these only, and a version that
// disappears (`si-server image rm` runs in another process) is remembered as removed, so
// that the agents fetching it are told so at once instead of stalling.
import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import { describeError } from '../errors.ts'
import { withDefaults } from '../config/defaults.ts'
import { parseImageRef } from '../formats/image-ref.ts'
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

export interface CatalogueEvents {
  /** the served versions changed: `added` are new, `removed` are gone from the repository */
  changed: [added: ImageVersion[], removed: ImageVersion[]]
  /** the repository could not be listed (the last listing still holds) */
  warning: [err: Error]
}

export class ImageCatalogue extends EventEmitter<CatalogueEvents> implements ServedTorrents {
  readonly config: Readonly<CatalogueConfig>
  private readonly repo: ImageRepository
  /** by info hash (hex) */
  private readonly current = new Map<string, ImageVersion>()
  /** by info hash (hex), the oldest removal first */
  private readonly removed = new Map<string, ImageVersion>()
  private scanning: Promise<void> | undefined
  private lastScanAt = -Infinity
  private timer: NodeJS.Timeout | undefined

  constructor (repo: ImageRepository, config?: Partial<CatalogueConfig>) {
    super()
    this.repo = repo
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

  versions (): ImageVersion[] {
    return [...this.current.values()]
  }

  status (infoHashHex: string): TorrentStatus {
    if (this.current.has(infoHashHex)) return { served: true }
    const gone = this.removed.get(infoHashHex)
    return gone === undefined ? { served: false } : { served: false, removed: `${gone.name}@${gone.version}` }
  }

  /** Whether versions of this reference were served and are gone, none being left to serve in their place. */
  wasRemoved (ref: string): boolean {
    const { name, version } = parseImageRef(ref)
    const matches = (v: ImageVersion): boolean => v.name === name && (version === undefined || v.version === version)
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
    let listed: ImageVersion[]
    try {
      listed = await this.repo.list()
    } catch (err) {
      this.emit('warning', err instanceof Error ? err : new Error(describeError(err)))
      return
    }
    const present = new Map(listed.map(v => [v.infoHashHex, v]))
    const removed: ImageVersion[] = []
    for (const [hash, version] of this.current) {
      if (present.has(hash)) continue
      this.current.delete(hash)
      this.remember(hash, version)
      removed.push(version)
    }
    const added: ImageVersion[] = []
    for (const [hash, version] of present) {
      if (this.current.has(hash)) continue
      this.current.set(hash, version)
      this.removed.delete(hash)
      added.push(version)
    }
    if (added.length > 0 || removed.length > 0) this.emit('changed', added, removed)
  }

  private remember (hash: string, version: ImageVersion): void {
    this.removed.delete(hash)
    this.removed.set(hash, version)
    while (this.removed.size > this.config.maxRemembered) {
      this.removed.delete(this.removed.keys().next().value as string)
    }
  }
}
