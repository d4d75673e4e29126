// The first seeder: one swarm per version served, images and overrides alike, all behind
// one peer listener, kept in step with the catalogue as versions are added and removed.
import { EventEmitter } from 'node:events'
import { describeError } from '../errors.ts'
import type { ImageRepository } from '../image/repository.ts'
import { parseTorrent } from '../torrent/metainfo.ts'
import { withDefaults } from '../config/defaults.ts'
import type { SwarmConfig } from '../swarm/config.ts'
import { PeerListener } from '../swarm/peer-listener.ts'
import { PieceStore } from '../swarm/piece-store.ts'
import { Swarm, SERVER_PEER_ID_PREFIX, newPeerId } from '../swarm/swarm.ts'
import { TokenBucket } from '../swarm/token-bucket.ts'
import { describeServed, type ServedVersion } from './catalogue.ts'

export interface SeederConfig {
  /**
   * The swarms' config over the swarm defaults. The server seeds to everyone who asks: its
   * upload is what starts every deployment, so it serves many more peers at once than a
   * node (256 upload slots, 2048 connections; ARCHITECTURE.md, the first seeder).
   */
  swarm: Partial<SwarmConfig>
}

export const DEFAULT_SEEDER_CONFIG: Readonly<SeederConfig> = Object.freeze({
  swarm: Object.freeze({ uploadSlots: 256, maxConnections: 2048 })
})

export interface SeederOptions {
  /** cap on the upload of every image together, bytes per second */
  uploadBytesPerSecond?: number
  /** overrides of DEFAULT_SEEDER_CONFIG; `swarm` is merged over its default, field by field */
  config?: Partial<SeederConfig>
}

export interface SeederEvents {
  /** a fault that stops no other image's seeding (the repository, one image, the listener) */
  warning: [err: Error]
}

interface Seeding { version: ServedVersion; swarm: Swarm }

export class Seeder extends EventEmitter<SeederEvents> {
  readonly peerId = newPeerId(SERVER_PEER_ID_PREFIX)
  readonly config: Readonly<SeederConfig>
  private readonly repo: ImageRepository
  private readonly listener: PeerListener
  private readonly seeding = new Map<string, Seeding>()
  /** the sync under way and those queued behind it */
  private syncing: Promise<void> = Promise.resolve()
  private stopped = false
  private readonly uploadLimit: TokenBucket | undefined

  constructor (repo: ImageRepository, opts: SeederOptions = {}) {
    super()
    this.repo = repo
    const config = withDefaults(DEFAULT_SEEDER_CONFIG, opts.config)
    this.config = { ...config, swarm: withDefaults<Partial<SwarmConfig>>(DEFAULT_SEEDER_CONFIG.swarm, opts.config?.swarm) }
    this.uploadLimit = opts.uploadBytesPerSecond === undefined ? undefined : new TokenBucket(opts.uploadBytesPerSecond)
    // The peers that dial in are built with the listener's config: the same as the swarms'.
    this.listener = new PeerListener({ config: this.config.swarm })
    this.listener.on('warning', err => this.emit('warning', err))
  }

  get port (): number { return this.listener.port }

  /** Listens for peers; the versions to seed come with sync(). */
  async start (host: string, port: number): Promise<void> {
    await this.listener.start(host, port)
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.syncing
    await Promise.all([...this.seeding.values()].map(async s => {
      await s.swarm.stop()
      await s.swarm.store.close()
    }))
    this.seeding.clear()
    await this.listener.stop()
  }

  isSeeding (infoHashHex: string): boolean { return this.seeding.has(infoHashHex) }

  /** Bytes uploaded over the wire protocol, per version ("NAME@N", "override NAME@N") and in total. */
  uploaded (): { total: number; byImage: Record<string, number> } {
    const byImage: Record<string, number> = {}
    let total = 0
    for (const s of this.seeding.values()) {
      const up = s.swarm.stats().uploaded
      byImage[describeServed(s.version)] = up
      total += up
    }
    return { total, byImage }
  }

  /**
   * Seeds exactly these versions: swarms of versions no longer listed stop (their peers'
   * connections close), new ones start. Calls run one after another, in order.
   */
  sync (versions: ServedVersion[]): Promise<void> {
    this.syncing = this.syncing.then(() => this.apply(versions))
    return this.syncing
  }

  private async apply (versions: ServedVersion[]): Promise<void> {
    if (this.stopped) return
    const present = new Set(versions.map(v => v.infoHashHex))
    for (const [hash, s] of this.seeding) {
      if (present.has(hash)) continue
      this.seeding.delete(hash)
      await s.swarm.stop()
      await s.swarm.store.close()
    }
    for (const version of versions) {
      if (this.stopped || this.seeding.has(version.infoHashHex)) continue
      try {
        await this.seed(version)
      } catch (err) {
        this.emit('warning', new Error(`cannot seed ${describeServed(version)}: ${describeError(err)}`))
      }
    }
  }

  private async seed (version: ServedVersion): Promise<void> {
    const meta = parseTorrent(await this.repo.readTorrent(version))
    const store = await PieceStore.openComplete(version.tarPath, meta, this.config.swarm)
    const swarm = new Swarm({
      infoHash: meta.infoHash,
      peerId: this.peerId,
      store,
      listener: this.listener,
      announceUrls: [],
      config: this.config.swarm,
      uploadLimit: this.uploadLimit,
      superSeed: true
    })
    swarm.on('warning', err => this.emit('warning', err))
    swarm.start()
    this.seeding.set(version.infoHashHex, { version, swarm })
  }
}
