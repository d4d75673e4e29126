// The operators' console on the server's side: the fleet view, the deployment history,
// the metrics, the per-address rate limit and the sampler behind the live charts, with
// one start() and stop() for the image server to call.
import { join } from 'node:path'
import { describeError } from '../errors.ts'
import type { ImageRepository } from '../image/repository.ts'
import { Fleet } from './fleet.ts'
import { DeploymentHistory } from './history.ts'
import { ServerMetrics } from './metrics.ts'
import { AddressRateLimiter } from './rate-limit.ts'
import { GroupLookup, ImageNames } from './fleet-lookups.ts'
import { HISTORY_FILE, type FleetConfig } from './console-config.ts'

/** The server's own upload, read at each sample and scrape. */
export interface ServerBytes {
  httpPayload: number
  seederByImage: Record<string, number>
  /** kernel and initramfs sent, by file name (boot-files.ts) */
  bootFiles?: Record<string, number>
}

export interface OperatorsConsoleOptions {
  repo: ImageRepository
  plansDir: string
  serverBytes: () => ServerBytes
  config?: Partial<FleetConfig>
  /** where a history that cannot be written is said (once) */
  onWarning?: (message: string) => void
  /** no history database (tests of the fleet alone) */
  history?: boolean
}

export class OperatorsConsole {
  readonly fleet: Fleet
  readonly metrics = new ServerMetrics()
  readonly limiter: AddressRateLimiter
  history: DeploymentHistory | undefined
  private readonly opts: OperatorsConsoleOptions
  private sampler: NodeJS.Timeout | undefined
  private lastServerBytes = 0
  private lastSampleAt = 0
  private historyWriteErrors = 0

  constructor (opts: OperatorsConsoleOptions) {
    this.opts = opts
    const groups = new GroupLookup(opts.plansDir)
    const images = new ImageNames(opts.repo)
    this.fleet = new Fleet({
      config: opts.config,
      groupOf: (node, macs) => groups.groupOf(node, macs),
      imageOf: hash => images.imageOf(hash)
    })
    const c = this.fleet.config
    this.limiter = new AddressRateLimiter({ perSecond: c.requestsPerSecondPerAddress, burst: c.requestBurstPerAddress, maxAddresses: c.maxTrackedAddresses })
    this.fleet.on('step', node => {
      if (this.history === undefined) return
      try { this.history.save(node) } catch (err) {
        if (this.historyWriteErrors++ === 0) opts.onWarning?.(`deployment history: ${describeError(err)} (further errors are counted in /metrics)`)
      }
    })
    this.fleet.on('phase', (_node, phase, error) => { if (phase === 'failed') this.metrics.countNodeError(error?.code ?? 'ERR_UNKNOWN') })
  }

  start (): void {
    if (this.opts.history !== false) {
      const file = join(this.opts.repo.root, HISTORY_FILE)
      try { this.history = DeploymentHistory.openForWriting(file) } catch (err) {
        this.opts.onWarning?.(`no deployment history: ${describeError(err)}`)
      }
    }
    this.lastServerBytes = this.serverBytesTotal()
    this.lastSampleAt = Date.now()
    this.sampler = setInterval(() => this.sample(), this.fleet.config.sampleIntervalMs)
    this.sampler.unref()
  }

  stop (): void {
    clearInterval(this.sampler)
    this.sampler = undefined
    this.history?.close()
    this.history = undefined
  }

  metricsText (): string {
    const bytes = this.opts.serverBytes()
    const tally = this.fleet.tally()
    return this.metrics.render({
      nodesByImagePhase: tally.byImagePhase,
      fleetStoredBytes: this.fleet.storedBytes,
      reportIntervalSeconds: this.fleet.intervalSeconds(),
      httpPayloadBytes: bytes.httpPayload,
      seederBytesByImage: bytes.seederByImage,
      bootFileBytes: bytes.bootFiles ?? {},
      nodeBytesFromServer: tally.bytesFromServer,
      nodeBytesFromPeers: tally.bytesFromPeers,
      historyWriteErrors: this.historyWriteErrors
    })
  }

  private serverBytesTotal (): number {
    const b = this.opts.serverBytes()
    return b.httpPayload + Object.values(b.seederByImage).reduce((a, n) => a + n, 0)
  }

  private sample (): void {
    const now = Date.now()
    const total = this.serverBytesTotal()
    // A version removed takes its seeder counter with it: never a negative rate.
    const rate = now > this.lastSampleAt ? Math.max(0, total - this.lastServerBytes) / ((now - this.lastSampleAt) / 1000) : 0
    this.lastServerBytes = total
    this.lastSampleAt = now
    this.fleet.sample(rate)
  }
}
