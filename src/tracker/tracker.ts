import type http from 'node:http'
import { performance } from 'node:perf_hooks'
import { SiError } from '../errors.ts'
import { normaliseHost } from '../net-address.ts'
import { parseAnnounceRequest } from './announce-request.ts'
import { PeerTable, type PeerEntry, type SwarmStats } from './peer-table.ts'
import { parseRawQuery } from './query.ts'
import { announceReply, failureReply, scrapeReply } from './replies.ts'
import { parseScrapeRequest } from './scrape-request.ts'
import { trackerConfig, type TrackerConfig } from './config.ts'

export const ANNOUNCE_PATH = '/announce'
export const SCRAPE_PATH = '/scrape'

/** What the tracker knows of an info hash it is asked about. */
export type TorrentStatus =
  | { served: true }
  /** `removed`: the torrent was served and is no more (its image, as "NAME@VERSION") */
  | { served: false; removed?: string }

/** The torrents a tracker serves: the image server's repository. */
export interface ServedTorrents {
  status: (infoHashHex: string) => TorrentStatus
  /**
   * Looks again (the repository may have gained a version a moment ago); the tracker calls
   * it for a hash it does not know, then asks `status` once more. The implementation bounds
   * how often it really looks, for anyone can send unknown hashes.
   */
  refresh: () => Promise<void>
}

export interface TrackerOptions {
  /** overrides of DEFAULT_TRACKER_CONFIG */
  config?: Partial<TrackerConfig>
  /**
   * When set, only these torrents are tracked: an announce for another hash gets a failure
   * reason, one for a removed torrent says so (ERR_IMAGE_REMOVED), and scrape lists these
   * only. Unset (tests of the tracker alone), any hash is tracked up to maxSwarms.
   */
  torrents?: ServedTorrents
  /**
   * Seeders living in the same process as the tracker (the image server's first seeder).
   * They never announce over HTTP, where they would be seen at a loopback address; each
   * reply names them at the local address the announcing node reached us on.
   */
  seedPeers?: (infoHashHex: string, localAddress: string) => Array<{ host: string; port: number; peerId: Uint8Array }>
}

/** A peer as the fleet view sees it: the table's entry without its bookkeeping. */
export type SwarmPeer = Omit<PeerEntry, 'peerId' | 'touchedAt' | 'countedComplete'>

export interface SwarmView extends SwarmStats { peers: SwarmPeer[] }

/** BEP 3 HTTP tracker with compact peers (BEP 23) and scrape (BEP 48), mounted by the caller's HTTP server. */
export class Tracker {
  private readonly config: Readonly<TrackerConfig>
  private readonly intervalSeconds: number
  private readonly minIntervalSeconds: number
  private readonly maxPeersPerReply: number
  private readonly peerTtlMs: number
  private readonly torrents: ServedTorrents | undefined
  private readonly table: PeerTable
  private readonly seedPeers: TrackerOptions['seedPeers']
  private sweepTimer: NodeJS.Timeout | undefined

  constructor (opts: TrackerOptions = {}) {
    const config = trackerConfig(opts.config ?? {})
    this.config = config
    this.intervalSeconds = positiveInteger('intervalSeconds', config.intervalSeconds)
    this.minIntervalSeconds = positiveInteger('minIntervalSeconds',
      config.minIntervalSeconds ?? Math.max(1, Math.floor(this.intervalSeconds / 3)))
    this.maxPeersPerReply = positiveInteger('maxPeersPerReply', config.maxPeersPerReply)
    const ttlSeconds = config.peerTtlSeconds ?? config.peerTtlIntervals * this.intervalSeconds
    if (!(ttlSeconds > 0) || !Number.isFinite(ttlSeconds)) {
      throw new SiError('ERR_INVALID_ARGUMENT', `peerTtlSeconds must be a positive number (got ${ttlSeconds})`)
    }
    this.peerTtlMs = ttlSeconds * 1000
    this.torrents = opts.torrents
    this.seedPeers = opts.seedPeers
    this.table = new PeerTable({
      peerTtlMs: this.peerTtlMs,
      maxPeersPerSwarm: positiveInteger('maxPeersPerSwarm', config.maxPeersPerSwarm),
      maxPeersPerAddress: positiveInteger('maxPeersPerAddress', config.maxPeersPerAddress),
      maxSwarms: positiveInteger('maxSwarms', config.maxSwarms)
    })
  }

  start (): void {
    if (this.sweepTimer !== undefined) return
    const period = Math.min(this.config.maxSweepMs, Math.max(this.config.minSweepMs, this.peerTtlMs / 2))
    this.sweepTimer = setInterval(() => this.table.expire(performance.now()), period)
    this.sweepTimer.unref()
  }

  stop (): void {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer)
    this.sweepTimer = undefined
  }

  /**
   * Answers GET /announce and GET /scrape; false for any other path, for the caller to
   * route. Never throws: a bad request gets a BEP 3 failure reason with HTTP 200.
   */
  handle (req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const target = req.url ?? ''
    const mark = target.indexOf('?')
    const path = mark === -1 ? target : target.slice(0, mark)
    const query = mark === -1 ? '' : target.slice(mark + 1)
    if (path !== ANNOUNCE_PATH && path !== SCRAPE_PATH) return false
    void this.answer(req, res, path, query)
    return true
  }

  /** Forgets a torrent's peers at once (its image was removed). */
  forget (infoHashHex: string): void {
    this.table.forget(infoHashHex.toLowerCase())
  }

  private async answer (req: http.IncomingMessage, res: http.ServerResponse, path: string, query: string): Promise<void> {
    let status = 200
    let body: Uint8Array
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        status = 405
        throw new SiError('ERR_TRACKER_REQUEST', `method ${req.method ?? '?'} not allowed, use GET`)
      }
      body = path === ANNOUNCE_PATH ? await this.onAnnounce(req, query) : this.onScrape(query)
    } catch (err) {
      body = err instanceof SiError
        ? failureReply(err.message, { code: err.code, final: err.code === 'ERR_IMAGE_REMOVED' })
        : failureReply('internal tracker error')
    }
    send(req, res, status, body)
  }

  /** The tracker's view of one swarm, for the fleet view and the leave-the-swarm policy. */
  swarm (infoHashHex: string): SwarmView {
    const swarm = this.table.get(infoHashHex.toLowerCase())
    if (swarm === undefined) return { complete: 0, incomplete: 0, downloaded: 0, peers: [] }
    swarm.expire(performance.now() - this.peerTtlMs)
    const peers = [...swarm.peers.values()].map((p) => ({
      peerIdHex: p.peerIdHex,
      host: p.host,
      port: p.port,
      left: p.left,
      uploaded: p.uploaded,
      downloaded: p.downloaded,
      lastSeen: p.lastSeen
    }))
    return { ...swarm.stats(), peers }
  }

  private async onAnnounce (req: http.IncomingMessage, query: string): Promise<Uint8Array> {
    const announce = parseAnnounceRequest(parseRawQuery(query), {
      defaultNumwant: Math.min(this.config.defaultNumwant, this.maxPeersPerReply),
      maxNumwant: this.maxPeersPerReply
    })
    // The address is the socket's: the `ip` parameter would let anyone point a swarm elsewhere.
    const host = peerHost(req.socket.remoteAddress)
    await this.checkServed(announce.infoHashHex)
    const { swarm, self } = this.table.announce(announce, host, performance.now())
    const localSeeds = this.localSeedsFor(announce.infoHashHex, req)
    const tracked = swarm?.stats() ?? { complete: 0, incomplete: 0, downloaded: 0 }
    const stats = { ...tracked, complete: tracked.complete + localSeeds.length }
    const sampled = swarm === undefined || self === undefined
      ? []
      : swarm.sample(self, announce.numwant, announce.left === 0)
    const peers = announce.left === 0 || announce.event === 'stopped' ? sampled : [...localSeeds, ...sampled]
    return announceReply({
      intervalSeconds: this.intervalSeconds,
      minIntervalSeconds: this.minIntervalSeconds,
      stats,
      peers,
      compact: announce.compact,
      noPeerId: announce.noPeerId
    })
  }

  private isServed (infoHashHex: string): boolean {
    return this.torrents === undefined || this.torrents.status(infoHashHex).served
  }

  /** Throws the refusal for a torrent not served: unknown (after one more look), or removed. */
  private async checkServed (infoHashHex: string): Promise<void> {
    if (this.torrents === undefined) return
    let status = this.torrents.status(infoHashHex)
    if (!status.served && status.removed === undefined) {
      await this.torrents.refresh()
      status = this.torrents.status(infoHashHex)
    }
    if (status.served) return
    if (status.removed !== undefined) throw new SiError('ERR_IMAGE_REMOVED', `image ${status.removed} was removed from this server`)
    throw new SiError('ERR_TRACKER_REQUEST', `info_hash ${infoHashHex} is not served by this tracker`)
  }

  private localSeedsFor (infoHashHex: string, req: http.IncomingMessage): PeerEntry[] {
    if (this.seedPeers === undefined) return []
    const local = peerHost(req.socket.localAddress)
    const now = Date.now()
    return this.seedPeers(infoHashHex, local).map(p => ({
      peerId: p.peerId,
      peerIdHex: Buffer.from(p.peerId).toString('hex'),
      host: p.host,
      port: p.port,
      left: 0,
      uploaded: 0,
      downloaded: 0,
      lastSeen: now,
      touchedAt: performance.now(),
      countedComplete: false
    }))
  }

  private onScrape (query: string): Uint8Array {
    const requested = parseScrapeRequest(parseRawQuery(query))
    const entries: Array<{ infoHash: Uint8Array; stats: SwarmStats }> = []
    if (requested.length === 0) {
      for (const swarm of this.table.all()) {
        if (this.isServed(Buffer.from(swarm.infoHash).toString('hex'))) entries.push({ infoHash: swarm.infoHash, stats: swarm.stats() })
      }
    } else {
      const seen = new Set<string>()
      for (const infoHash of requested) {
        const hex = Buffer.from(infoHash).toString('hex')
        if (seen.has(hex)) continue
        seen.add(hex)
        if (!this.isServed(hex)) continue
        const stats = this.table.get(hex)?.stats() ?? { complete: 0, incomplete: 0, downloaded: 0 }
        entries.push({ infoHash, stats })
      }
    }
    return scrapeReply(entries)
  }
}

function peerHost (remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) throw new SiError('ERR_TRACKER_REQUEST', 'peer address unknown (connection closed)')
  return normaliseHost(remoteAddress)
}

function send (req: http.IncomingMessage, res: http.ServerResponse, status: number, body: Uint8Array): void {
  const headers: http.OutgoingHttpHeaders = {
    'Content-Type': 'text/plain',
    'Content-Length': body.length,
    'Cache-Control': 'no-store'
  }
  if (status === 405) headers.Allow = 'GET, HEAD'
  res.writeHead(status, headers)
  res.end(req.method === 'HEAD' ? undefined : body)
}

function positiveInteger (name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new SiError('ERR_INVALID_ARGUMENT', `${name} must be a positive integer (got ${value})`)
  }
  return value
}
