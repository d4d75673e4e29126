// si-server's long-running part: HTTP API and tracker on one port, the first seeder on
// another, the repository underneath (images and overrides), watched by the catalogue. start() and stop() own
// every socket, timer and file.
import { EventEmitter } from 'node:events'
import type http from 'node:http'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import { ImageRepository } from '../image/repository.ts'
import { overrideRepository } from '../image/overrides.ts'
import { Tracker } from '../tracker/tracker.ts'
import { createHttpApi } from './http-api.ts'
import type { Fleet } from './fleet.ts'
import { OperatorsConsole } from './operators-console.ts'
import type { FleetConfig } from './console-config.ts'
import { Seeder } from './seeder.ts'
import { PlanStore } from './plans.ts'
import { BOOT_DIR, PLANS_DIR } from './config.ts'
import { ImageCatalogue } from './catalogue.ts'
import { InUseRecorder, type VersionInUse } from './in-use.ts'
import { NodeCredentials } from './node-credentials.ts'
import { repositorySigner } from '../image/keys.ts'
import type { Signer } from '../formats/signature.ts'

export interface ImageServerOptions {
  repoDir: string
  host: string
  port: number
  /** the seeder's address (default: host) */
  peerHost?: string
  peerPort: number
  publicUrl?: string
  announceIntervalSeconds?: number
  /** serve torrents and track, but do not seed (another seeder, or a test of standard clients) */
  seed?: boolean
  /** cap on the seeder's BitTorrent upload, bytes per second, shared by every image */
  uploadBytesPerSecond?: number
  /** node plans for GET /api/plan (default REPO/plans) */
  plansDir?: string
  /** kernel and initramfs for GET /boot/NAME (default REPO/boot) */
  bootDir?: string
  /** extra kernel arguments in the generated iPXE script */
  bootKernelArgs?: string
  /** plans and credentials only for nodes that prove themselves (si.token) */
  requireToken?: boolean
  /** the fleet view's bounds and report pacing (tests, load tests) */
  fleet?: Partial<FleetConfig>
}

export interface ImageServerEvents {
  /** a fault that stops nothing else: the repository, one image, the listener, the in-use record */
  warning: [err: Error]
}

export class ImageServer extends EventEmitter<ImageServerEvents> {
  readonly repo: ImageRepository
  /** `si-server override add`: served under /overrides/, tracked and seeded like images */
  readonly overrides: ImageRepository
  readonly catalogue: ImageCatalogue
  readonly console: OperatorsConsole
  readonly tracker: Tracker
  readonly seeder: Seeder
  private readonly inUse: InUseRecorder
  private http: http.Server | undefined
  /** the repository key, once started: agents trust its public half */
  signer: Signer | undefined
  private readonly opts: ImageServerOptions
  private readonly startedAt = Date.now()
  private payloadBytesSent = 0
  httpPort = 0

  constructor (opts: ImageServerOptions) {
    super()
    this.opts = opts
    this.repo = new ImageRepository(opts.repoDir)
    this.overrides = overrideRepository(opts.repoDir)
    this.catalogue = new ImageCatalogue([{ collection: 'images', repo: this.repo }, { collection: 'overrides', repo: this.overrides }])
    this.seeder = new Seeder(this.repo, { uploadBytesPerSecond: opts.uploadBytesPerSecond })
    this.console = new OperatorsConsole({
      repo: this.repo,
      plansDir: opts.plansDir ?? join(opts.repoDir, PLANS_DIR),
      serverBytes: () => ({ httpPayload: this.payloadBytesSent, seederByImage: this.seeder.uploaded().byImage }),
      config: opts.fleet,
      onWarning: message => this.emit('warning', new SiError('ERR_HISTORY', message))
    })
    this.tracker = new Tracker({
      config: { intervalSeconds: opts.announceIntervalSeconds },
      torrents: this.catalogue,
      // The seeder never announces over HTTP: it would be seen at the loopback address.
      // Every reply instead names it at the address the node used to reach us.
      seedPeers: (infoHashHex, localAddress) => this.seeding && this.seeder.isSeeding(infoHashHex)
        ? [{ host: localAddress, port: this.seeder.port, peerId: this.seeder.peerId }]
        : []
    })
    this.inUse = new InUseRecorder(opts.repoDir, () => this.versionsInUse(), err => this.emit('warning', err))
    this.catalogue.on('warning', err => this.emit('warning', err))
    this.seeder.on('warning', err => this.emit('warning', err))
    this.catalogue.on('changed', (_added, removed) => {
      // Agents still announcing a removed version are told so (ERR_IMAGE_REMOVED); its
      // swarm's connections close with the seeder's.
      for (const version of removed) this.tracker.forget(version.infoHashHex)
      if (this.seeding) void this.seeder.sync(this.catalogue.versions())
    })
  }

  private get seeding (): boolean { return this.opts.seed !== false }

  async start (): Promise<void> {
    // Made on first use; a key readable by others stops the server here, before it serves.
    const signer = this.signer = await repositorySigner(this.opts.repoDir)
    const credentials = await NodeCredentials.open(this.opts.repoDir)
    await this.catalogue.start()
    if (this.seeding) {
      await this.seeder.start(this.opts.peerHost ?? this.opts.host, this.opts.peerPort)
      await this.seeder.sync(this.catalogue.versions())
    }
    this.tracker.start()
    this.console.start()
    const server = createHttpApi({
      signer,
      credentials,
      requireToken: this.opts.requireToken,
      repo: this.repo,
      overrides: this.overrides,
      tracker: this.tracker,
      console: this.console,
      publicUrl: this.opts.publicUrl,
      status: () => this.status(),
      onPayloadBytes: bytes => { this.payloadBytesSent += bytes },
      wasRemoved: (ref, collection) => this.catalogue.wasRemoved(ref, collection),
      plans: new PlanStore(this.opts.plansDir ?? join(this.opts.repoDir, PLANS_DIR)),
      boot: { dir: this.opts.bootDir ?? join(this.opts.repoDir, BOOT_DIR), kernelArgs: this.opts.bootKernelArgs }
    })
    this.http = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', err => reject(new SiError('ERR_INVALID_ARGUMENT', `cannot listen on ${this.opts.host}:${this.opts.port}: ${err.message}`, { cause: err })))
      server.listen(this.opts.port, this.opts.host, () => resolve())
    })
    const address = server.address()
    this.httpPort = typeof address === 'object' && address !== null ? address.port : this.opts.port
    await this.inUse.start()
  }

  async stop (): Promise<void> {
    await this.inUse.stop()
    const server = this.http
    this.http = undefined
    if (server !== undefined) {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
    this.tracker.stop()
    await this.catalogue.stop()
    this.console.stop()
    await this.seeder.stop()
  }

  get fleet (): Fleet { return this.console.fleet }

  status (): Record<string, unknown> {
    const uploaded = this.seeder.uploaded()
    return {
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      peerPort: this.seeder.port,
      seederUploadedBytes: uploaded.total,
      seederUploadedByImage: uploaded.byImage,
      payloadBytesSent: this.payloadBytesSent,
      serverBytesSent: uploaded.total + this.payloadBytesSent,
      nodes: this.fleet.size
    }
  }

  /** The served versions the tracker lists leechers of: `si-server image rm` reads them (in-use.ts). */
  private versionsInUse (): VersionInUse[] {
    return this.catalogue.versions().map(v => ({
      collection: v.collection,
      name: v.name,
      version: v.version,
      infoHash: v.infoHashHex,
      fetchers: this.tracker.swarm(v.infoHashHex).peers.filter(p => p.left > 0).map(p => `${p.host}:${p.port}`)
    }))
  }
}
