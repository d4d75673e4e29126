// si-server's long-running part: HTTP API and tracker on one port, the first seeder on
// another, the repository underneath. start() and stop() own every socket and timer.
import type http from 'node:http'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import { ImageRepository } from '../image/repository.ts'
import { Tracker } from '../tracker/tracker.ts'
import { createHttpApi } from './http-api.ts'
import { Fleet } from './fleet.ts'
import { Seeder } from './seeder.ts'
import { PlanStore } from './plans.ts'
import { BOOT_DIR, PLANS_DIR } from './config.ts'


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
}

export class ImageServer {
  readonly repo: ImageRepository
  readonly fleet = new Fleet()
  readonly tracker: Tracker
  readonly seeder: Seeder
  private http: http.Server | undefined
  private readonly opts: ImageServerOptions
  private readonly startedAt = Date.now()
  private payloadBytesSent = 0
  httpPort = 0

  constructor (opts: ImageServerOptions) {
    this.opts = opts
    this.repo = new ImageRepository(opts.repoDir)
    this.seeder = new Seeder(this.repo, { uploadBytesPerSecond: opts.uploadBytesPerSecond })
    this.tracker = new Tracker({
      config: { intervalSeconds: opts.announceIntervalSeconds },
      // The seeder never announces over HTTP: it would be seen at the loopback address.
      // Every reply instead names it at the address the node used to reach us.
      seedPeers: (infoHashHex, localAddress) => this.opts.seed !== false && this.seeder.isSeeding(infoHashHex)
        ? [{ host: localAddress, port: this.seeder.port, peerId: this.seeder.peerId }]
        : []
    })
  }

  async start (): Promise<void> {
    if (this.opts.seed !== false) await this.seeder.start(this.opts.peerHost ?? this.opts.host, this.opts.peerPort)
    this.tracker.start()
    const server = createHttpApi({
      repo: this.repo,
      tracker: this.tracker,
      fleet: this.fleet,
      publicUrl: this.opts.publicUrl,
      status: () => this.status(),
      onPayloadBytes: bytes => { this.payloadBytesSent += bytes },
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
  }

  async stop (): Promise<void> {
    const server = this.http
    this.http = undefined
    if (server !== undefined) {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
    this.tracker.stop()
    await this.seeder.stop()
  }

  status (): Record<string, unknown> {
    const uploaded = this.seeder.uploaded()
    return {
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      peerPort: this.seeder.port,
      seederUploadedBytes: uploaded.total,
      seederUploadedByImage: uploaded.byImage,
      payloadBytesSent: this.payloadBytesSent,
      serverBytesSent: uploaded.total + this.payloadBytesSent,
      nodes: this.fleet.list().length
    }
  }
}
