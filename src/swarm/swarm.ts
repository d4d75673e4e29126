// One torrent's swarm. The same class downloads (agent) and seeds (server, or an agent
// done). It coordinates its parts: the connections (PeerConnections), the downloads
// (Requester), and the upload side it keeps itself: which peers it serves (the choker),
// what it reveals of its pieces when super-seeding, and the tracker that finds peers. It
// owns the lifecycle and the figures.
import { EventEmitter } from 'node:events'
import { swarmConfig, type SwarmConfig } from './config.ts'
import { PeerConnections } from './connections.ts'
import type { Peer } from './peer.ts'
import type { PeerListener } from './peer-listener.ts'
import { isServerPeerId } from './peer-id.ts'
import { selectUnchoked } from './choker.ts'
import type { PieceStore } from './piece-store.ts'
import { Requester, type LastPiece } from './requester.ts'
import { TrackerClient, type PeerAddress } from './tracker-client.ts'
import { RateMeter } from './rate-meter.ts'
import { SuperSeed } from './super-seed.ts'
import type { TokenBucket } from './token-bucket.ts'

export { AGENT_PEER_ID_PREFIX, SERVER_PEER_ID_PREFIX, newPeerId } from './peer-id.ts'

export interface SwarmOptions {
  infoHash: Buffer
  peerId: Buffer
  store: PieceStore
  /**
   * The listener peers dial us on, shared by the swarms of one process. The peers that dial
   * in are built with the listener's config, those we dial with this swarm's.
   */
  listener: PeerListener
  announceUrls: string[]
  /** overrides of DEFAULT_SWARM_CONFIG */
  config?: Partial<SwarmConfig>
  /** an agent that is complete does not go looking for peers; it waits for those who need it */
  connectWhenComplete?: boolean
  /** shared upload cap (one bucket may serve several swarms) */
  uploadLimit?: TokenBucket
  /** reveal pieces a few at a time so peers fetch distinct ones (the image server's seeder) */
  superSeed?: boolean
}

export interface SwarmStats {
  pieceCount: number
  piecesVerified: number
  length: number
  verifiedBytes: number
  downloaded: number
  downloadedFromServer: number
  uploaded: number
  downloadRate: number
  uploadRate: number
  peers: number
  /** peers known to hold every piece; a finished agent shows as one only to peers that lacked its last pieces (see needsHave in requester.ts) */
  seeds: number
  hashFailures: number
  bannedPeers: number
  lastPiece: LastPiece | undefined
}

export interface SwarmEvents {
  /** a piece passed its hash check */
  verified: [index: number]
  /** every piece is verified */
  complete: []
  /** a fault that does not stop the swarm (tracker, storage) */
  warning: [err: Error]
  /** a peer's connection ended on an error: `key` names the peer */
  'peer-error': [key: string, err: Error]
  /** a peer was banned for sending corrupt data */
  'peer-banned': [key: string, reason: string]
}

export class Swarm extends EventEmitter<SwarmEvents> {
  readonly infoHash: Buffer
  readonly infoHashHex: string
  readonly peerId: Buffer
  readonly store: PieceStore
  readonly config: Readonly<SwarmConfig>
  private readonly listener: PeerListener
  private readonly connections: PeerConnections
  private readonly requester: Requester
  private readonly tracker: TrackerClient | undefined
  private readonly uploadLimit: TokenBucket | undefined
  private readonly superSeed: SuperSeed | undefined
  private readonly downloadRate = new RateMeter()
  private readonly uploadRate = new RateMeter()
  private peakUploadRate = 0
  private chokeTimer: NodeJS.Timeout | undefined
  private requestTimer: NodeJS.Timeout | undefined
  private downloaded = 0
  private downloadedFromServer = 0
  private uploaded = 0
  private started = false
  private stopped = false

  constructor (opts: SwarmOptions) {
    super()
    this.infoHash = opts.infoHash
    this.infoHashHex = opts.infoHash.toString('hex')
    this.peerId = opts.peerId
    this.store = opts.store
    this.listener = opts.listener
    this.config = swarmConfig(opts.config)
    this.uploadLimit = opts.uploadLimit
    const { layout } = opts.store
    this.superSeed = opts.superSeed === true ? new SuperSeed(layout.pieceCount, { config: this.config }) : undefined

    this.requester = new Requester(opts.store, this.config)
    this.requester.on('peer-pieces', () => this.revealToWaiting())
    this.requester.on('convicted', (peerId, reason) => this.connections.ban(peerId, reason))
    this.requester.on('verified', index => this.emit('verified', index))
    this.requester.on('complete', () => {
      this.tracker?.completed()
      this.emit('complete')
    })
    this.requester.on('warning', err => this.emit('warning', err))

    const connectWhenComplete = opts.connectWhenComplete ?? false
    this.connections = new PeerConnections({
      infoHash: this.infoHash,
      peerId: this.peerId,
      pieceCount: layout.pieceCount,
      listener: this.listener,
      config: this.config,
      wantsPeers: () => !this.requester.isComplete || connectWhenComplete,
      idleTimeoutApplies: () => this.requester.completed > 0 && this.superSeed === undefined
    })
    this.connections.on('attached', peer => this.onAttached(peer))
    this.connections.on('detached', peer => this.onDetached(peer))
    this.connections.on('peer-error', (key, err) => this.emit('peer-error', key, err))
    this.connections.on('peer-banned', (key, reason) => this.emit('peer-banned', key, reason))

    if (opts.announceUrls.length > 0) {
      this.tracker = new TrackerClient({
        announceUrls: opts.announceUrls,
        infoHash: this.infoHash,
        peerId: this.peerId,
        port: this.listener.port,
        getStats: () => ({ uploaded: this.uploaded, downloaded: this.downloaded, left: layout.length - this.requester.verifiedBytes }),
        config: this.config
      })
      this.tracker.on('peers', peers => { for (const p of peers) this.addPeerAddress(p) })
      this.tracker.on('warning', err => this.emit('warning', err))
    }
  }

  get isComplete (): boolean { return this.requester.isComplete }

  start (): void {
    if (this.started) return
    this.started = true
    this.listener.register(this.infoHashHex, this)
    this.tracker?.start()
    this.chokeTimer = setInterval(() => this.rechoke(), this.config.chokeIntervalMs)
    this.chokeTimer.unref()
    this.requestTimer = setInterval(() => {
      this.requester.requestAll()
      // Offers go stale and the measured rate grows: both free slots for new ones.
      this.revealToWaiting()
    }, this.config.requestTickMs)
    this.requestTimer.unref()
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.listener.unregister(this.infoHashHex)
    clearInterval(this.chokeTimer)
    clearInterval(this.requestTimer)
    this.requester.stop()
    this.connections.stop()
    await this.tracker?.stop()
  }

  stats (): SwarmStats {
    return {
      pieceCount: this.requester.pieceCount,
      piecesVerified: this.requester.completed,
      length: this.store.layout.length,
      verifiedBytes: this.requester.verifiedBytes,
      downloaded: this.downloaded,
      downloadedFromServer: this.downloadedFromServer,
      uploaded: this.uploaded,
      downloadRate: this.downloadRate.rate(),
      uploadRate: this.uploadRate.rate(),
      peers: this.connections.size,
      seeds: this.requester.seedCount(),
      hashFailures: this.requester.hashFailures,
      bannedPeers: this.connections.bannedCount,
      lastPiece: this.requester.lastPiece
    }
  }

  /** Peers learnt by any route: tracker, PEX, or given on the command line. */
  addPeerAddress (addr: PeerAddress): void {
    this.connections.addPeerAddress(addr)
  }

  /** IncomingPeerHandler: the listener hands over a peer whose handshake named our torrent. */
  adoptIncoming (peer: Peer): void {
    this.connections.adoptIncoming(peer)
  }

  private onAttached (peer: Peer): void {
    peer.serveFrom(
      (index, offset, length) => this.store.readBlock(index, offset, length),
      (index, offset, length) => this.checkRequest(index, offset, length),
      this.uploadLimit
    )
    const wire = peer.wire
    wire.on('interested', () => this.maybeUnchoke(peer))
    wire.on('uninterested', () => { if (!wire.amChoking) { wire.choke(); peer.waitingSince = Date.now() } })
    const fromServer = isServerPeerId(peer.id)
    wire.on('download', n => {
      this.downloaded += n
      this.downloadRate.add(n)
      if (fromServer) this.downloadedFromServer += n
    })
    wire.on('upload', n => { this.uploaded += n; this.uploadRate.add(n) })
    this.requester.add(peer)
    if (this.superSeeding) this.revealToWaiting()
    else if (this.requester.completed > 0) wire.bitfield(this.store.bitfield())
    this.maybeUnchoke(peer)
  }

  private onDetached (peer: Peer): void {
    this.requester.remove(peer)
    this.superSeed?.peerGone(peer.id)
    // Pieces only the departed peer held may now be revealed to those still waiting for them.
    this.revealToWaiting()
    // The image server's seeder leaving may mean the image was removed: the tracker says so.
    const serverLeft = peer.outgoing && isServerPeerId(peer.id)
    if ((this.connections.size < this.config.lowPeerCount || serverLeft) && !this.requester.isComplete) this.tracker?.announceNow()
  }

  private get superSeeding (): boolean {
    return this.superSeed !== undefined && this.requester.isComplete
  }

  /** Super-seeding: hands the free offer slots to the peers waiting longest for one. */
  private revealToWaiting (): void {
    if (!this.superSeeding || this.superSeed === undefined) return
    // The busiest second too: a seeder idle before the deployment began averages the idle
    // seconds into its windowed rate, which then took up to 5 s to show its link's rate.
    this.peakUploadRate = Math.max(this.peakUploadRate, this.uploadRate.rate(), this.uploadRate.busiestSecond())
    const { superSeedMinOffers, superSeedOfferSeconds } = this.config
    const capacity = Math.max(superSeedMinOffers, Math.ceil(this.peakUploadRate * superSeedOfferSeconds / this.store.layout.pieceLength))
    const candidates = [...this.connections.values()]
      .filter(peer => !peer.isClosed)
      .map(peer => ({ id: peer.id, has: (i: number) => peer.wire.peerPieces.get(i) }))
    for (const { peer, index } of this.superSeed.allocate(candidates, i => this.requester.copies(i), capacity)) {
      this.connections.get(peer)?.wire.have(index)
    }
  }

  private checkRequest (index: number, offset: number, length: number): string | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.requester.pieceCount) return `no piece ${index}`
    if (!this.store.has(index)) return `piece ${index} is not held here`
    // Standard clients may ask a super-seed for pieces it has not revealed; serving them is harmless.
    if (offset < 0 || offset + length > this.store.pieceSize(index)) return 'past the end of the piece'
    this.superSeed?.touch(index)
    return undefined
  }

  private maybeUnchoke (peer: Peer): void {
    const wire = peer.wire
    if (!wire.peerInterested || !wire.amChoking) return
    let unchoked = 0
    for (const other of this.connections.values()) if (!other.wire.amChoking) unchoked++
    if (unchoked < this.config.uploadSlots) {
      wire.unchoke()
      peer.unchokedSince = Date.now()
    }
  }

  private rechoke (): void {
    const now = Date.now()
    const peers = [...this.connections.values()]
    const candidates = peers.map(peer => ({
      id: peer.id,
      interested: peer.wire.peerInterested,
      unchoked: !peer.wire.amChoking,
      unchokedSince: peer.unchokedSince,
      waitingSince: peer.waitingSince
    }))
    const chosen = selectUnchoked(candidates, this.config.uploadSlots, now, this.config.rotateAfterMs)
    for (const peer of peers) {
      if (chosen.has(peer.id)) {
        if (peer.wire.amChoking) { peer.wire.unchoke(); peer.unchokedSince = now }
      } else if (!peer.wire.amChoking) {
        peer.wire.choke()
        peer.waitingSince = now
      }
    }
    this.connections.sweepIdle(now)
    this.connections.connectMore()
  }
}
