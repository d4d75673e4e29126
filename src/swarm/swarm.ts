// One torrent's swarm: connects to peers, asks the picker what to request, verifies
// pieces through the store, answers requests, runs the choker and the discovery of peers
// (tracker, PEX). The same class downloads (agent) and seeds (server, or an agent done).
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { SiError, describeError } from '../errors.ts'
import { Peer, MAX_QUEUED_REQUESTS, dialPeer } from './peer.ts'
import { VERSION } from '../version.ts'
import type { PeerListener } from './peer-listener.ts'
import { PiecePicker, BLOCK_SIZE, ENDGAME_AFTER_MS } from './piece-picker.ts'
import { selectUnchoked, DEFAULT_UPLOAD_SLOTS } from './choker.ts'
import type { PieceStore } from './piece-store.ts'
import { TrackerClient, type PeerAddress } from './tracker-client.ts'
import { RateMeter } from './rate-meter.ts'
import { SmartBan } from './smart-ban.ts'
import { SuperSeed } from './super-seed.ts'
import { DialBackoff } from './dial-backoff.ts'
import type { TokenBucket } from './token-bucket.ts'

export const DEFAULT_MAX_CONNECTIONS = 80
/** The share of the connection limit a node fills by dialling; the rest waits for peers that dial it. */
export const DIAL_SHARE = 0.5
export const CONNECT_TIMEOUT_MS = 5_000
export const CHOKE_INTERVAL_MS = 2_000
/** Requests are topped up on every block; this tick also catches blocks freed by a choke or gone stale (endgame). */
export const REQUEST_TICK_MS = 1_000
/** A peer that leaves requests unanswered this long is dropped and its blocks go elsewhere. */
export const REQUEST_TIMEOUT_MS = 20_000
/** Requests kept in flight per peer: enough to cover this much time at the peer's current rate. */
export const REQUEST_QUEUE_SECONDS = 1
/**
 * What a peer of unknown speed is asked for at once. Small, because on a deployment LAN
 * every node asks every other: 32 peers each holding 16 of our requests would queue half
 * a 16 MiB image ahead of us, seconds of latency that endgame then mistakes for stalls.
 */
export const MIN_PIPELINE = 4
export const MAX_PIPELINE = 256
/** A peer's queue is topped up once this share of it has drained. */
export const REQUEST_BATCH_FRACTION = 0.25
/** Endgame asks a second peer for a block once the first has had this many times its expected delivery time. */
export const ENDGAME_LATENCY_FACTOR = 3
/** ... but never waits longer than this for a peer that has gone quiet. */
export const ENDGAME_MAX_WAIT_MS = 5_000
/** The super-seed keeps offers alive for this much of its best upload rate ... */
export const SEED_OFFER_SECONDS = 2
/** ... and at least this many, whatever the rate. */
export const MIN_SEED_OFFERS = 2
/** Below this many peers we ask the tracker for more before the next interval. */
export const LOW_PEER_COUNT = 8
/** Peer ids of the image server's seeder start with this, so nodes can tell server bytes from peer bytes. */
export const SERVER_PEER_ID_PREFIX = '-SS'
const SERVER_PEER_ID_PREFIX_HEX = Buffer.from(SERVER_PEER_ID_PREFIX).toString('hex')
/** Peer ids of our nodes' agents start with this: peers known to need no redundant haves. */
export const AGENT_PEER_ID_PREFIX = '-SI'
const AGENT_PEER_ID_PREFIX_HEX = Buffer.from(AGENT_PEER_ID_PREFIX).toString('hex')
/** The client version in our peer ids (Azureus style: -XX0100-, then 12 random bytes). */
const PEER_ID_VERSION = '0100'

/** A fresh 20-byte peer id for the server's seeder or a node's agent. */
export function newPeerId (prefix: typeof SERVER_PEER_ID_PREFIX | typeof AGENT_PEER_ID_PREFIX): Buffer {
  return Buffer.concat([Buffer.from(`${prefix}${PEER_ID_VERSION}-`), randomBytes(12)])
}

export interface SwarmOptions {
  infoHash: Buffer
  peerId: Buffer
  store: PieceStore
  listener: PeerListener
  announceUrls: string[]
  maxConnections?: number
  uploadSlots?: number
  announceIntervalSeconds?: number
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
  /** peers known to hold every piece; a finished agent shows as one only to peers that lacked its last pieces (see needsHave) */
  seeds: number
  hashFailures: number
  bannedPeers: number
}

interface PeerState {
  peer: Peer
  haveCount: number
  /** the pieces counted in the picker's availability for this peer */
  held: Uint8Array
  /**
   * The picker's return count when a full pick last found nothing for this peer, while
   * every piece it announced since went through `pickAnnounced`; undefined otherwise.
   */
  exhaustedAt: number | undefined
}

export class Swarm extends EventEmitter {
  readonly infoHash: Buffer
  readonly infoHashHex: string
  readonly peerId: Buffer
  readonly store: PieceStore
  private readonly picker: PiecePicker
  private readonly listener: PeerListener
  private readonly tracker: TrackerClient | undefined
  private readonly peers = new Map<string, PeerState>()
  private readonly connecting = new Set<string>()
  private readonly handshaking = new Set<Peer>()
  private readonly known = new Map<string, PeerAddress>()
  private readonly bannedIds = new Set<string>()
  private readonly bannedKeys = new Set<string>()
  private readonly selfKeys = new Set<string>()
  private readonly dialBackoff = new DialBackoff()
  private readonly maxConnections: number
  private readonly uploadSlots: number
  private readonly connectWhenComplete: boolean
  private readonly uploadLimit: TokenBucket | undefined
  private readonly superSeed: SuperSeed | undefined
  private readonly smartBan = new SmartBan()
  private readonly downloadRate = new RateMeter()
  private readonly uploadRate = new RateMeter()
  private peakUploadRate = 0
  private chokeTimer: NodeJS.Timeout | undefined
  private requestTimer: NodeJS.Timeout | undefined
  private downloaded = 0
  private downloadedFromServer = 0
  private uploaded = 0
  private hashFailures = 0
  private started = false
  private stopped = false

  constructor (opts: SwarmOptions) {
    super()
    this.infoHash = opts.infoHash
    this.infoHashHex = opts.infoHash.toString('hex')
    this.peerId = opts.peerId
    this.store = opts.store
    this.listener = opts.listener
    this.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS
    this.uploadSlots = opts.uploadSlots ?? DEFAULT_UPLOAD_SLOTS
    this.connectWhenComplete = opts.connectWhenComplete ?? false
    this.uploadLimit = opts.uploadLimit
    this.superSeed = opts.superSeed === true ? new SuperSeed(opts.store.layout.pieceCount) : undefined
    const { layout } = opts.store
    this.picker = new PiecePicker({
      pieceCount: layout.pieceCount,
      pieceLength: layout.pieceLength,
      totalLength: layout.length,
      endgameAfterMs: requesters => this.endgameWait(requesters)
    })
    for (let i = 0; i < layout.pieceCount; i++) if (opts.store.has(i)) this.picker.verified(i)
    if (opts.announceUrls.length > 0) {
      this.tracker = new TrackerClient({
        announceUrls: opts.announceUrls,
        infoHash: this.infoHash,
        peerId: this.peerId,
        port: this.listener.port,
        getStats: () => ({ uploaded: this.uploaded, downloaded: this.downloaded, left: this.store.layout.length - this.picker.verifiedBytes }),
        intervalOverrideSeconds: opts.announceIntervalSeconds
      })
      this.tracker.on('peers', (peers: PeerAddress[]) => { for (const p of peers) this.addPeerAddress(p) })
      this.tracker.on('warning', (err: Error) => this.emit('warning', err))
    }
  }

  get isComplete (): boolean { return this.picker.isComplete }
  get trackerReply (): { complete?: number; incomplete?: number } | undefined { return this.tracker?.last }

  start (): void {
    if (this.started) return
    this.started = true
    this.listener.register(this.infoHashHex, this)
    this.tracker?.start()
    this.chokeTimer = setInterval(() => this.rechoke(), CHOKE_INTERVAL_MS)
    this.chokeTimer.unref()
    this.requestTimer = setInterval(() => {
      for (const state of this.peers.values()) this.request(state)
      // Offers go stale and the measured rate grows: both free slots for new ones.
      this.revealToWaiting()
    }, REQUEST_TICK_MS)
    this.requestTimer.unref()
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.listener.unregister(this.infoHashHex)
    clearInterval(this.chokeTimer)
    clearInterval(this.requestTimer)
    for (const peer of this.handshaking) peer.destroy()
    for (const { peer } of this.peers.values()) peer.destroy()
    this.peers.clear()
    await this.tracker?.stop()
  }

  stats (): SwarmStats {
    let seeds = 0
    for (const s of this.peers.values()) if (s.haveCount === this.picker.pieceCount) seeds++
    return {
      pieceCount: this.picker.pieceCount,
      piecesVerified: this.picker.completed,
      length: this.store.layout.length,
      verifiedBytes: this.picker.verifiedBytes,
      downloaded: this.downloaded,
      downloadedFromServer: this.downloadedFromServer,
      uploaded: this.uploaded,
      downloadRate: this.downloadRate.rate(),
      uploadRate: this.uploadRate.rate(),
      peers: this.peers.size,
      seeds,
      hashFailures: this.hashFailures,
      bannedPeers: this.bannedIds.size
    }
  }

  /** Peers learnt by any route: tracker, PEX, or given on the command line. */
  addPeerAddress (addr: PeerAddress): void {
    if (this.stopped || !Number.isInteger(addr.port) || addr.port <= 0 || addr.port > 65535) return
    const key = `${addr.host}:${addr.port}`
    this.known.set(key, addr)
    this.connectMore()
  }

  /** IncomingPeerHandler: the listener hands over a peer whose handshake named our torrent. */
  adoptIncoming (peer: Peer): void {
    // Refused before our handshake, which the dialler takes as "full" and backs off from.
    if (this.stopped || this.atConnectionLimit()) { peer.destroy(); return }
    this.prepareWire(peer)
    peer.wire.handshake(this.infoHash, this.peerId)
    this.attach(peer)
  }

  /**
   * Connections to other nodes, which the limit counts, and how many of them we dialled
   * (pending dials included): the image server's seeder never takes a slot, so a node
   * whose slots are full of peers still reaches it.
   */
  private nodeConnections (): { total: number; dialled: number } {
    let total = this.connecting.size
    let dialled = this.connecting.size
    for (const { peer } of this.peers.values()) {
      if (isServerPeer(peer)) continue
      total++
      if (peer.outgoing) dialled++
    }
    return { total, dialled }
  }

  private atConnectionLimit (): boolean {
    return this.nodeConnections().total >= this.maxConnections
  }

  /**
   * Dials known peers while the limit allows, but only up to its dial share: if every node
   * dialled up to the whole limit, the first to start would fill each other's slots and a
   * node starting late would find every peer full. Kept free for peers that dial us, the
   * other share guarantees room somewhere for every newcomer.
   */
  private connectMore (): void {
    if (this.stopped || (this.picker.isComplete && !this.connectWhenComplete)) return
    const { total, dialled } = this.nodeConnections()
    let free = Math.min(this.maxConnections - total, Math.ceil(this.maxConnections * DIAL_SHARE) - dialled)
    if (free <= 0) return
    const connected = new Set<string>()
    for (const { peer } of this.peers.values()) connected.add(peer.key)
    const now = Date.now()
    for (const [key, addr] of this.known) {
      if (free <= 0) return
      if (this.connecting.has(key) || this.bannedKeys.has(key) || this.selfKeys.has(key) || connected.has(key)) continue
      if (!this.dialBackoff.mayDial(key, now)) continue
      this.connectTo(key, addr)
      free--
    }
  }

  private connectTo (key: string, addr: PeerAddress): void {
    this.connecting.add(key)
    const socket = dialPeer(addr.host, addr.port)
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy())
    const giveUp = (): void => {
      this.connecting.delete(key)
      this.known.delete(key)
    }
    socket.once('error', giveUp)
    socket.once('connect', () => {
      socket.setTimeout(0)
      socket.off('error', giveUp)
      const peer = new Peer(socket, { outgoing: true, listenPort: addr.port })
      this.handshaking.add(peer)
      let answered = false
      peer.awaitHandshake(infoHashHex => {
        answered = true
        this.dialBackoff.succeeded(key)
        if (infoHashHex === this.infoHashHex) this.attach(peer)
        else peer.destroy(new SiError('ERR_PEER_PROTOCOL', `peer ${key} answered for another torrent`))
      }, () => {
        this.handshaking.delete(peer)
        this.connecting.delete(key)
        if (!answered) this.dialBackoff.refused(key)
      })
      this.prepareWire(peer)
      peer.wire.handshake(this.infoHash, this.peerId)
    })
  }

  private prepareWire (peer: Peer): void {
    peer.wire.setPieceCount(this.picker.pieceCount)
    peer.wire.extendedHandshake.p = this.listener.port
    // BEP 10: how many requests we queue per peer, so clients like Transmission do not overrun it.
    peer.wire.extendedHandshake.reqq = MAX_QUEUED_REQUESTS
    peer.wire.extendedHandshake.v = `swarmimager ${VERSION}`
    peer.wire.startKeepAlive()
  }

  private attach (peer: Peer): void {
    const id = peer.wire.peerId ?? ''
    peer.id = id
    if (this.stopped || peer.isClosed) { peer.destroy(); return }
    if (id === this.peerId.toString('hex')) {
      if (peer.outgoing) this.selfKeys.add(peer.key)
      peer.destroy()
      return
    }
    if (this.bannedIds.has(id)) { peer.destroy(); return }
    const existing = this.peers.get(id)
    if (existing !== undefined) {
      // Both sides dialled at once: keep the connection opened by the smaller peer id, as the other side does.
      const keepNew = peer.outgoing === (this.peerId.toString('hex') < id)
      if (!keepNew) { peer.destroy(); return }
      existing.peer.removeAllListeners('close')
      this.detach(existing)
      existing.peer.destroy()
    }
    const state: PeerState = { peer, haveCount: 0, held: new Uint8Array(this.picker.pieceCount), exhaustedAt: undefined }
    this.peers.set(id, state)
    peer.serveFrom(
      (index, offset, length) => this.store.readBlock(index, offset, length),
      (index, offset, length) => this.checkRequest(index, offset, length),
      this.uploadLimit
    )
    peer.once('close', (err?: Error) => {
      this.detach(state)
      if (err !== undefined) this.emit('peer-error', peer.key, err)
      this.connectMore()
    })
    this.listen(state)
    if (this.superSeeding) this.revealToWaiting()
    else if (this.picker.completed > 0) peer.wire.bitfield(this.store.bitfield())
    this.introduceViaPex(state)
    peer.wire.setRequestTimeout(REQUEST_TIMEOUT_MS)
    this.emit('peer', peer.key)
    this.maybeUnchoke(state)
  }

  private listen (state: PeerState): void {
    const { peer } = state
    const wire = peer.wire
    // BEP 3 wants the bitfield first and alone, but aria2c re-sends it in place of haves:
    // each one is taken as the peer's whole holding and counted by its difference.
    wire.on('bitfield', () => {
      const bits = wire.peerPieces.buffer
      const expected = Math.ceil(this.picker.pieceCount / 8)
      if (bits.length !== expected || hasSpareBits(bits, this.picker.pieceCount)) {
        peer.destroy(new SiError('ERR_PEER_PROTOCOL', `peer ${peer.key} sent a bitfield of ${bits.length} bytes for ${this.picker.pieceCount} pieces`))
        return
      }
      for (let i = 0; i < this.picker.pieceCount; i++) this.setHeld(state, i, wire.peerPieces.get(i))
      this.afterPeerPieces(state)
    })
    wire.on('have', (index: number) => {
      if (!Number.isInteger(index) || index >= this.picker.pieceCount) {
        peer.destroy(new SiError('ERR_PEER_PROTOCOL', `peer ${peer.key} announced piece ${index} of ${this.picker.pieceCount}`))
        return
      }
      this.setHeld(state, index, true)
      if (!wire.amInterested && !this.picker.hasPiece(index)) wire.interested()
      this.afterPeerPieces(state, index)
    })
    wire.on('unchoke', () => this.request(state))
    // The wire has failed the outstanding requests (their answers returned the blocks to
    // the pool); the others may take them now.
    wire.on('choke', () => { for (const other of this.peers.values()) if (other !== state) this.request(other) })
    wire.on('interested', () => this.maybeUnchoke(state))
    wire.on('uninterested', () => { if (!wire.amChoking) { wire.choke(); peer.waitingSince = Date.now() } })
    wire.on('timeout', () => peer.destroy(new SiError('ERR_PEER_PROTOCOL', `peer ${peer.key} left requests unanswered for ${REQUEST_TIMEOUT_MS / 1000} s`)))
    const fromServer = isServerPeer(peer)
    wire.on('download', (n: number) => {
      this.downloaded += n
      this.downloadRate.add(n)
      if (fromServer) this.downloadedFromServer += n
    })
    wire.on('upload', (n: number) => { this.uploaded += n; this.uploadRate.add(n) })
    // An incoming peer's listening port is known only from its extended handshake.
    wire.on('extended-handshake', () => { if (!peer.outgoing) this.introduceViaPex(state) })
    wire.pex.on('peer', (addr: PeerAddress) => this.addPeerAddress(addr))
  }

  private setHeld (state: PeerState, index: number, has: boolean): void {
    if ((state.held[index] === 1) === has) return
    state.held[index] = has ? 1 : 0
    state.haveCount += has ? 1 : -1
    if (has) this.picker.peerHasPiece(index)
    else this.picker.peerLostPiece(index)
  }

  private get superSeeding (): boolean {
    return this.superSeed !== undefined && this.picker.isComplete
  }

  /** Super-seeding: hands the free offer slots to the peers waiting longest for one. */
  private revealToWaiting (): void {
    if (!this.superSeeding || this.superSeed === undefined) return
    const rate = this.uploadRate.rate()
    this.peakUploadRate = Math.max(this.peakUploadRate, rate)
    const capacity = Math.max(MIN_SEED_OFFERS, Math.ceil(this.peakUploadRate * SEED_OFFER_SECONDS / this.store.layout.pieceLength))
    const candidates = [...this.peers.values()]
      .filter(s => !s.peer.isClosed)
      .map(s => ({ id: s.peer.id, has: (i: number) => s.peer.wire.peerPieces.get(i) }))
    for (const { peer, index } of this.superSeed.allocate(candidates, i => this.picker.copies(i), capacity)) {
      this.peers.get(peer)?.peer.wire.have(index)
    }
  }

  /** `announced`: the one piece a have added; undefined after a bitfield. */
  private afterPeerPieces (state: PeerState, announced?: number): void {
    const { peer } = state
    this.revealToWaiting()
    if (this.picker.isComplete && state.haveCount === this.picker.pieceCount) {
      // Two seeds have nothing to say to each other.
      peer.destroy()
      return
    }
    if (!peer.wire.amInterested && this.picker.wants(i => peer.wire.peerPieces.get(i))) peer.wire.interested()
    this.request(state, announced)
  }

  private detach (state: PeerState): void {
    const { peer } = state
    if (this.peers.get(peer.id) !== state) return
    this.peers.delete(peer.id)
    for (const index of this.picker.peerGone(peer.id)) this.store.discard(index)
    this.superSeed?.peerGone(peer.id)
    for (let i = 0; i < this.picker.pieceCount; i++) if (state.held[i] === 1) this.picker.peerLostPiece(i)
    // Pieces only the departed peer held may now be revealed to those still waiting for them.
    this.revealToWaiting()
    if (peer.listenPort !== undefined) {
      const gone = { host: peer.remoteHost, port: peer.listenPort }
      for (const other of this.peers.values()) other.peer.wire.pex.dropPeer(gone)
    }
    if (this.peers.size < LOW_PEER_COUNT && !this.picker.isComplete) this.tracker?.announceNow()
  }

  private introduceViaPex (state: PeerState): void {
    const { peer } = state
    const newAddr = peer.listenPort !== undefined ? { host: peer.remoteHost, port: peer.listenPort } : undefined
    for (const other of this.peers.values()) {
      if (other === state) continue
      if (other.peer.listenPort !== undefined) peer.wire.pex.addPeer({ host: other.peer.remoteHost, port: other.peer.listenPort })
      if (newAddr !== undefined) other.peer.wire.pex.addPeer(newAddr)
    }
  }

  /** How long the peers holding a block's request may take before endgame asks another. */
  private endgameWait (requesters: Set<string>): number {
    let wait = ENDGAME_AFTER_MS
    for (const id of requesters) {
      const peer = this.peers.get(id)?.peer
      if (peer === undefined) continue
      const rate = peer.downloadRate.rate()
      // A peer that has sent nothing yet has shown no queue to wait for: the base wait applies.
      if (rate <= 0) continue
      const expected = (peer.outstanding * BLOCK_SIZE / rate) * 1000 * ENDGAME_LATENCY_FACTOR
      wait = Math.max(wait, Math.min(ENDGAME_MAX_WAIT_MS, expected))
    }
    return wait
  }

  private pipelineDepth (peer: Peer): number {
    const byRate = Math.ceil(peer.downloadRate.rate() * REQUEST_QUEUE_SECONDS / BLOCK_SIZE)
    return Math.max(MIN_PIPELINE, Math.min(MAX_PIPELINE, byRate))
  }

  /**
   * Tops up the requests to a peer. `announced`: the piece a have just added. A peer for
   * which the last full pick found nothing, with no block back in the pool since, can
   * offer only that piece, so only it is looked at: a full pick scans every piece, and
   * each of a node's peers announces every piece.
   */
  private request (state: PeerState, announced?: number): void {
    const { peer } = state
    const wire = peer.wire
    const onlyAnnounced = announced !== undefined && state.exhaustedAt === this.picker.returnCount
    state.exhaustedAt = undefined
    if (peer.isClosed || this.stopped || wire.peerChoking || this.picker.isComplete) return
    const depth = this.pipelineDepth(peer)
    const want = depth - peer.outstanding
    // Topped up in batches: a pick per arriving block costs CPU that 32 peers make visible.
    if (want <= 0 || want < Math.ceil(depth * REQUEST_BATCH_FRACTION)) return
    const blocks = onlyAnnounced
      ? this.picker.pickAnnounced(peer.id, announced, want)
      : this.picker.pick(peer.id, i => wire.peerPieces.get(i), want)
    if (blocks.length === 0) {
      if (onlyAnnounced || !this.picker.endgame) state.exhaustedAt = this.picker.returnCount
      if (peer.outstanding === 0 && wire.amInterested && !this.picker.wants(i => wire.peerPieces.get(i))) wire.uninterested()
      return
    }
    if (!wire.amInterested) wire.interested()
    for (const block of blocks) {
      peer.outstanding++
      wire.request(block.index, block.offset, block.length, data => {
        peer.outstanding--
        if (data === undefined) {
          this.picker.abandoned(peer.id, block.index, block.offset)
          return
        }
        this.onBlock(state, block.index, block.offset, data)
      })
    }
  }

  private onBlock (state: PeerState, index: number, offset: number, data: Uint8Array): void {
    const result = this.picker.received(state.peer.id, index, offset)
    if (result === undefined) return
    for (const otherId of result.cancelFrom) {
      const other = this.peers.get(otherId)
      if (other !== undefined && !other.peer.isClosed) other.peer.wire.cancel(index, offset, data.length)
    }
    if (!result.duplicate) this.store.writeBlock(index, offset, data)
    if (result.pieceComplete) void this.commit(index)
    this.request(state)
  }

  private async commit (index: number): Promise<void> {
    const senders = this.picker.senders(index)
    let result: Awaited<ReturnType<PieceStore['commit']>>
    try {
      result = await this.store.commit(index)
    } catch (err) {
      this.picker.failed(index)
      this.emit('warning', new SiError('ERR_STAGING', `cannot store piece ${index}: ${describeError(err)}`, { cause: err }))
      return
    }
    if (this.stopped) return
    if (!result.verified) {
      this.onHashFailure(index, senders, result.data)
      return
    }
    if (result.data !== undefined) {
      for (const liar of this.smartBan.guilty(index, result.data)) this.ban(liar, this.peers.get(liar)?.peer, `sent corrupt data for piece ${index}`)
    }
    this.picker.verified(index)
    for (const { peer } of this.peers.values()) if (!peer.isClosed && needsHave(peer, index)) peer.wire.have(index)
    this.emit('verified', index)
    if (this.picker.isComplete) this.onComplete()
  }

  private onHashFailure (index: number, senders: Array<string | undefined>, data: Buffer | undefined): void {
    this.hashFailures++
    this.picker.failed(index)
    this.store.discard(index)
    const contributors = [...new Set(senders.filter((s): s is string => s !== undefined))]
    for (const id of contributors) {
      const state = this.peers.get(id)
      if (state !== undefined) state.peer.hashFailures++
    }
    // A piece from one peer alone convicts it; a shared one is settled when the piece,
    // fetched again from a single peer, passes and the blocks can be compared.
    if (contributors.length === 1) this.ban(contributors[0], this.peers.get(contributors[0])?.peer, `sent corrupt data for piece ${index}`)
    else if (data !== undefined) this.smartBan.recordFailure(index, data, senders)
    this.emit('hash-failure', index, contributors)
    for (const state of this.peers.values()) this.request(state)
  }

  private ban (id: string, peer: Peer | undefined, reason: string): void {
    if (this.bannedIds.has(id)) return
    this.bannedIds.add(id)
    const who = peer?.key ?? `peer ${id}`
    if (peer !== undefined) this.bannedKeys.add(peer.key)
    this.emit('peer-banned', who, reason)
    peer?.destroy(new SiError('ERR_PIECE_HASH_MISMATCH', `${who} ${reason}`))
  }

  private onComplete (): void {
    for (const state of this.peers.values()) {
      const { peer } = state
      if (state.haveCount === this.picker.pieceCount) peer.destroy()
      else peer.wire.uninterested()
    }
    this.tracker?.completed()
    this.emit('complete')
  }

  private checkRequest (index: number, offset: number, length: number): string | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.picker.pieceCount) return `no piece ${index}`
    if (!this.store.has(index)) return `piece ${index} is not held here`
    // Standard clients may ask a super-seed for pieces it has not revealed; serving them is harmless.
    if (offset < 0 || offset + length > this.store.pieceSize(index)) return 'past the end of the piece'
    this.superSeed?.touch(index)
    return undefined
  }

  private maybeUnchoke (state: PeerState): void {
    const wire = state.peer.wire
    if (!wire.peerInterested || !wire.amChoking) return
    let unchoked = 0
    for (const s of this.peers.values()) if (!s.peer.wire.amChoking) unchoked++
    if (unchoked < this.uploadSlots) {
      wire.unchoke()
      state.peer.unchokedSince = Date.now()
    }
  }

  private rechoke (): void {
    const now = Date.now()
    const candidates = [...this.peers.values()].map(({ peer }) => ({
      id: peer.id,
      interested: peer.wire.peerInterested,
      unchoked: !peer.wire.amChoking,
      unchokedSince: peer.unchokedSince,
      waitingSince: peer.waitingSince
    }))
    const chosen = selectUnchoked(candidates, this.uploadSlots, now)
    for (const { peer } of this.peers.values()) {
      if (chosen.has(peer.id)) {
        if (peer.wire.amChoking) { peer.wire.unchoke(); peer.unchokedSince = now }
      } else if (!peer.wire.amChoking) {
        peer.wire.choke()
        peer.waitingSince = now
      }
    }
    this.connectMore()
  }
}

function isServerPeer (peer: Peer): boolean {
  return peer.id.startsWith(SERVER_PEER_ID_PREFIX_HEX)
}

/**
 * A have tells a peer what it may ask us for. One of our agents that has announced the piece
 * itself learns nothing from it, and with every node announcing every piece to every other,
 * these redundant haves were half of all the haves a node sent and woke up for. Every
 * other peer gets them all: the image server's super-seed frees an offer on seeing its piece
 * announced, and other clients' super-seeding may count on a peer's own have.
 */
function needsHave (peer: Peer, index: number): boolean {
  return !(peer.id.startsWith(AGENT_PEER_ID_PREFIX_HEX) && peer.wire.peerPieces.get(index))
}

function hasSpareBits (bits: Uint8Array, pieceCount: number): boolean {
  const spare = bits.length * 8 - pieceCount
  if (spare <= 0) return false
  return (bits[bits.length - 1] & ((1 << spare) - 1)) !== 0
}
