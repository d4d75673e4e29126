import { SiError } from '../errors.ts'
import { isThisMachine } from '../net-address.ts'
import type { AnnounceRequest } from './announce-request.ts'
import { SampleSet } from './sample-set.ts'

export interface PeerEntry {
  peerId: Uint8Array
  peerIdHex: string
  host: string
  port: number
  left: number
  uploaded: number
  downloaded: number
  /** Wall-clock ms, for people and the fleet view. */
  lastSeen: number
  /** Monotonic ms, for expiry: a clock step on the server must not drop or keep peers. */
  touchedAt: number
  /** A peer counts once in `downloaded`, however many 'completed' it sends. */
  countedComplete: boolean
}

export interface SwarmStats { complete: number; incomplete: number; downloaded: number }

export interface PeerTableLimits {
  peerTtlMs: number
  maxPeersPerSwarm: number
  maxPeersPerAddress: number
  maxSwarms: number
}

/**
 * One torrent's peers. Map order is least recently announced first, which makes expiry
 * cheap; the same order per host says which of a host's entries makes room for its next.
 */
export class SwarmState {
  readonly infoHash: Uint8Array
  readonly peers = new Map<string, PeerEntry>()
  /** host:port -> peer id hex, so a client restarted with a new peer id replaces its old entry. */
  private readonly byAddress = new Map<string, string>()
  /** host -> its peers' ids, least recently announced first (the per-address cap). */
  private readonly byHost = new Map<string, Set<string>>()
  /** every peer, and the leechers alone (what a seeder is sent), for sampling */
  private readonly everyone = new SampleSet<PeerEntry>()
  private readonly leechers = new SampleSet<PeerEntry>()
  seeders = 0
  downloaded = 0

  constructor (infoHash: Uint8Array) {
    this.infoHash = infoHash
  }

  stats (): SwarmStats {
    return { complete: this.seeders, incomplete: this.peers.size - this.seeders, downloaded: this.downloaded }
  }

  upsert (req: AnnounceRequest, host: string, now: number, limits: PeerTableLimits): PeerEntry {
    const address = `${host}:${req.port}`
    const previousAtAddress = this.byAddress.get(address)
    if (previousAtAddress !== undefined && previousAtAddress !== req.peerIdHex) this.remove(previousAtAddress)

    const existing = this.peers.get(req.peerIdHex)
    if (existing?.host !== host) this.makeRoomAt(host, limits.maxPeersPerAddress)
    if (existing === undefined) {
      if (this.peers.size >= limits.maxPeersPerSwarm) {
        throw new SiError('ERR_TRACKER_REQUEST', `swarm is full (${limits.maxPeersPerSwarm} peers)`)
      }
    }
    const entry: PeerEntry = existing ?? {
      peerId: req.peerId,
      peerIdHex: req.peerIdHex,
      host,
      port: req.port,
      left: req.left,
      uploaded: 0,
      downloaded: 0,
      lastSeen: 0,
      touchedAt: 0,
      countedComplete: false
    }
    // Re-inserting moves the peer to the end of every order: least recently announced first.
    if (existing !== undefined) this.remove(req.peerIdHex)
    entry.host = host
    entry.port = req.port
    entry.left = req.left
    entry.uploaded = req.uploaded
    entry.downloaded = req.downloaded
    entry.lastSeen = Date.now()
    entry.touchedAt = now
    if (req.event === 'completed' && !entry.countedComplete) {
      entry.countedComplete = true
      this.downloaded++
    }
    this.insert(entry)
    return entry
  }

  remove (peerIdHex: string): void {
    const entry = this.peers.get(peerIdHex)
    if (entry === undefined) return
    this.peers.delete(peerIdHex)
    this.byAddress.delete(`${entry.host}:${entry.port}`)
    const ofHost = this.byHost.get(entry.host)
    ofHost?.delete(peerIdHex)
    if (ofHost?.size === 0) this.byHost.delete(entry.host)
    this.everyone.delete(entry)
    this.leechers.delete(entry)
    if (entry.left === 0) this.seeders--
  }

  /** Drops peers not heard from since `deadline`; stops at the first fresh one. */
  expire (deadline: number): void {
    for (const entry of this.peers.values()) {
      if (entry.touchedAt > deadline) break
      this.remove(entry.peerIdHex)
    }
  }

  /**
   * A uniform random sample of other peers, in time proportional to `count`. A seeder
   * asking gets only leechers: a seed has nothing to fetch from another seed.
   */
  sample (self: PeerEntry | undefined, count: number, requesterIsSeeder: boolean): PeerEntry[] {
    return (requesterIsSeeder ? this.leechers : this.everyone).sample(count, self)
  }

  private insert (entry: PeerEntry): void {
    this.peers.set(entry.peerIdHex, entry)
    this.byAddress.set(`${entry.host}:${entry.port}`, entry.peerIdHex)
    let ofHost = this.byHost.get(entry.host)
    if (ofHost === undefined) {
      ofHost = new Set()
      this.byHost.set(entry.host, ofHost)
    }
    ofHost.add(entry.peerIdHex)
    this.everyone.add(entry)
    if (entry.left === 0) this.seeders++
    else this.leechers.add(entry)
  }

  /** Drops the host's least recently announced entries until a new one fits under the cap. */
  private makeRoomAt (host: string, maxPeersPerAddress: number): void {
    if (isThisMachine(host)) return
    const ofHost = this.byHost.get(host)
    while (ofHost !== undefined && ofHost.size >= maxPeersPerAddress) {
      const oldest = ofHost.values().next().value as string
      this.remove(oldest)
    }
  }
}

/** Every swarm the tracker knows, bounded in swarms, in peers per swarm and in peers per address. */
export class PeerTable {
  private readonly swarms = new Map<string, SwarmState>()
  private readonly limits: PeerTableLimits

  constructor (limits: PeerTableLimits) {
    this.limits = limits
  }

  get (infoHashHex: string): SwarmState | undefined {
    return this.swarms.get(infoHashHex)
  }

  all (): IterableIterator<SwarmState> {
    return this.swarms.values()
  }

  /** Applies one announce; returns the swarm and the announcing peer (undefined once stopped). */
  announce (req: AnnounceRequest, host: string, now: number): { swarm: SwarmState | undefined; self: PeerEntry | undefined } {
    let swarm = this.swarms.get(req.infoHashHex)
    if (swarm !== undefined) swarm.expire(now - this.limits.peerTtlMs)
    if (req.event === 'stopped') {
      // Only the address that registered a peer may take it out of the swarm.
      const entry = swarm?.peers.get(req.peerIdHex)
      if (swarm !== undefined && entry !== undefined && entry.host === host) swarm.remove(req.peerIdHex)
      return { swarm, self: undefined }
    }
    if (swarm === undefined) {
      if (this.swarms.size >= this.limits.maxSwarms) this.evictOneEmptySwarm()
      swarm = new SwarmState(req.infoHash)
      this.swarms.set(req.infoHashHex, swarm)
    }
    const self = swarm.upsert(req, host, now, this.limits)
    return { swarm, self }
  }

  /** Drops a torrent and its peers (its image is no longer served). */
  forget (infoHashHex: string): void {
    this.swarms.delete(infoHashHex)
  }

  /** Expires stale peers everywhere; forgets empty swarms that have nothing worth keeping. */
  expire (now: number): void {
    const deadline = now - this.limits.peerTtlMs
    for (const [hex, swarm] of this.swarms) {
      swarm.expire(deadline)
      if (swarm.peers.size === 0 && swarm.downloaded === 0) this.swarms.delete(hex)
    }
  }

  private evictOneEmptySwarm (): void {
    for (const [hex, swarm] of this.swarms) {
      if (swarm.peers.size === 0) {
        this.swarms.delete(hex)
        return
      }
    }
    throw new SiError('ERR_TRACKER_REQUEST', `too many swarms (${this.limits.maxSwarms})`)
  }
}
