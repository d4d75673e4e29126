// The download side of a swarm: what each peer holds, which blocks to ask it for and how
// many at once, the blocks as they arrive, each piece verified and committed, and what a
// piece that fails its hash check says about who sent it.
import { EventEmitter } from 'node:events'
import { SiError, describeError } from '../errors.ts'
import type { RequestConfig } from './config.ts'
import type { Peer } from './peer.ts'
import { isAgentPeerId, isServerPeerId } from './peer-id.ts'
import { PiecePicker, BLOCK_SIZE } from './piece-picker.ts'
import type { PieceStore } from './piece-store.ts'
import { SmartBan } from './smart-ban.ts'

export interface RequesterEvents {
  /** a piece passed its hash check and is in the store */
  verified: [index: number]
  /** every piece is verified */
  complete: []
  /** a peer's pieces changed (bitfield or have), before any request follows from it */
  'peer-pieces': [peer: Peer]
  /** a peer is proven to have sent corrupt data */
  convicted: [peerId: string, reason: string]
  warning: [err: Error]
}

/** The last piece verified: when (Date.now()), and who sent its blocks: `server`, or a peer's address. */
export interface LastPiece { index: number; at: number; from: string[] }

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

export class Requester extends EventEmitter<RequesterEvents> {
  private readonly store: PieceStore
  private readonly config: Readonly<RequestConfig>
  private readonly picker: PiecePicker
  private readonly smartBan = new SmartBan()
  /** by peer id */
  private readonly states = new Map<string, PeerState>()
  private failures = 0
  private stopped = false
  private last: LastPiece | undefined

  constructor (store: PieceStore, config: Readonly<RequestConfig>) {
    super()
    this.store = store
    this.config = config
    const { layout } = store
    this.picker = new PiecePicker({
      pieceCount: layout.pieceCount,
      pieceLength: layout.pieceLength,
      totalLength: layout.length,
      endgameWait: requesters => this.endgameWait(requesters),
      config
    })
    for (let i = 0; i < layout.pieceCount; i++) if (store.has(i)) this.picker.verified(i)
  }

  get pieceCount (): number { return this.picker.pieceCount }
  get completed (): number { return this.picker.completed }
  get isComplete (): boolean { return this.picker.isComplete }
  get verifiedBytes (): number { return this.picker.verifiedBytes }
  get hashFailures (): number { return this.failures }
  /** The benchmark's timeline says from whom each node got its last piece, and when. */
  get lastPiece (): LastPiece | undefined { return this.last }
  /** How many connected peers hold the piece. */
  copies (index: number): number { return this.picker.copies(index) }

  /** Peers known to hold every piece. */
  seedCount (): number {
    let seeds = 0
    for (const s of this.states.values()) if (s.haveCount === this.picker.pieceCount) seeds++
    return seeds
  }

  /**
   * Every peer holds every piece: nobody here can use what we fetch, so the picker may
   * take pieces in order (PiecePicker.inOrder).
   */
  private onlySeeds (): boolean {
    return this.states.size > 0 && this.seedCount() === this.states.size
  }

  /** No more requests; pieces being verified are not committed to the picker. */
  stop (): void {
    this.stopped = true
  }

  /** Starts tracking an attached peer: what it holds, and what to ask it for. */
  add (peer: Peer): void {
    const state: PeerState = { peer, haveCount: 0, held: new Uint8Array(this.picker.pieceCount), exhaustedAt: undefined }
    this.states.set(peer.id, state)
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
    wire.on('have', index => {
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
    wire.on('choke', () => { for (const other of this.states.values()) if (other !== state) this.request(other) })
    wire.on('timeout', () => peer.destroy(new SiError('ERR_PEER_PROTOCOL', `peer ${peer.key} left requests unanswered for ${this.config.requestTimeoutMs / 1000} s`)))
    wire.setRequestTimeout(this.config.requestTimeoutMs)
  }

  /** A peer left: its requests and the pieces only it was fetching go back to the pool. */
  remove (peer: Peer): void {
    const state = this.states.get(peer.id)
    if (state?.peer !== peer) return
    this.states.delete(peer.id)
    for (const index of this.picker.peerGone(peer.id)) this.store.discard(index)
    for (let i = 0; i < this.picker.pieceCount; i++) if (state.held[i] === 1) this.picker.peerLostPiece(i)
  }

  /** Tops up every peer's requests (the periodic tick, and after a hash failure). */
  requestAll (): void {
    for (const state of this.states.values()) this.request(state)
  }

  /** Whether the peer holds a piece we lack. */
  wants (peer: Peer): boolean {
    return this.picker.wants(i => peer.wire.peerPieces.get(i))
  }

  private setHeld (state: PeerState, index: number, has: boolean): void {
    if ((state.held[index] === 1) === has) return
    state.held[index] = has ? 1 : 0
    state.haveCount += has ? 1 : -1
    if (has) this.picker.peerHasPiece(index)
    else this.picker.peerLostPiece(index)
  }

  /** `announced`: the one piece a have added; undefined after a bitfield. */
  private afterPeerPieces (state: PeerState, announced?: number): void {
    const { peer } = state
    this.emit('peer-pieces', peer)
    if (this.picker.isComplete && state.haveCount === this.picker.pieceCount) {
      // Two seeds have nothing to say to each other.
      peer.destroy()
      return
    }
    if (!peer.wire.amInterested && this.wants(peer)) peer.wire.interested()
    this.request(state, announced)
  }

  /** How long the peers holding a block's request may take before endgame asks another. */
  private endgameWait (requesters: Set<string>): number {
    const { endgameAfterMs, endgameLatencyFactor, endgameMaxWaitMs } = this.config
    let wait = endgameAfterMs
    for (const id of requesters) {
      const peer = this.states.get(id)?.peer
      if (peer === undefined) continue
      const rate = peer.downloadRate.rate()
      // A peer that has sent nothing yet has shown no queue to wait for: the base wait applies.
      if (rate <= 0) continue
      const expected = (peer.outstanding * BLOCK_SIZE / rate) * 1000 * endgameLatencyFactor
      wait = Math.max(wait, Math.min(endgameMaxWaitMs, expected))
    }
    return wait
  }

  private pipelineDepth (peer: Peer): number {
    const { requestQueueSeconds, minPipeline, maxPipeline } = this.config
    const byRate = Math.ceil(peer.downloadRate.rate() * requestQueueSeconds / BLOCK_SIZE)
    return Math.max(minPipeline, Math.min(maxPipeline, byRate))
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
    // Topped up in batches (why: SwarmConfig.requestBatchFraction).
    if (want <= 0 || want < Math.ceil(depth * this.config.requestBatchFraction)) return
    this.picker.inOrder = this.onlySeeds()
    const blocks = onlyAnnounced
      ? this.picker.pickAnnounced(peer.id, announced, want)
      : this.picker.pick(peer.id, i => wire.peerPieces.get(i), want)
    if (blocks.length === 0) {
      if (onlyAnnounced || !this.picker.endgame) state.exhaustedAt = this.picker.returnCount
      if (peer.outstanding === 0 && wire.amInterested && !this.wants(peer)) wire.uninterested()
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
      const other = this.states.get(otherId)
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
      for (const liar of this.smartBan.guilty(index, result.data)) this.emit('convicted', liar, `sent corrupt data for piece ${index}`)
    }
    this.picker.verified(index)
    this.last = { index, at: Date.now(), from: this.describeSenders(senders) }
    for (const { peer } of this.states.values()) if (!peer.isClosed && needsHave(peer, index)) peer.wire.have(index)
    this.emit('verified', index)
    if (this.picker.isComplete) this.onComplete()
  }

  private describeSenders (senders: Array<string | undefined>): string[] {
    const ids = new Set(senders.filter((s): s is string => s !== undefined))
    return [...ids].map(id => isServerPeerId(id) ? 'server' : this.states.get(id)?.peer.remoteHost ?? 'a peer gone since')
  }

  private onHashFailure (index: number, senders: Array<string | undefined>, data: Buffer | undefined): void {
    this.failures++
    this.picker.failed(index)
    this.store.discard(index)
    const contributors = [...new Set(senders.filter((s): s is string => s !== undefined))]
    // A piece from one peer alone convicts it; a shared one is settled when the piece,
    // fetched again from a single peer, passes and the blocks can be compared.
    if (contributors.length === 1) this.emit('convicted', contributors[0], `sent corrupt data for piece ${index}`)
    else if (data !== undefined) this.smartBan.recordFailure(index, data, senders)
    this.requestAll()
  }

  private onComplete (): void {
    for (const state of this.states.values()) {
      const { peer } = state
      if (state.haveCount === this.picker.pieceCount) peer.destroy()
      else peer.wire.uninterested()
    }
    this.emit('complete')
  }
}

/**
 * A have tells a peer what it may ask us for. One of our agents that has announced the piece
 * itself learns nothing from it, and with every node announcing every piece to every other,
 * these redundant haves were half of all the haves a node sent and woke up for. Every
 * other peer gets them all: the image server's super-seed frees an offer on seeing its piece
 * announced, and other clients' super-seeding may count on a peer's own have.
 */
function needsHave (peer: Peer, index: number): boolean {
  return !(isAgentPeerId(peer.id) && peer.wire.peerPieces.get(index))
}

function hasSpareBits (bits: Uint8Array, pieceCount: number): boolean {
  const spare = bits.length * 8 - pieceCount
  if (spare <= 0) return false
  return (bits[bits.length - 1] & ((1 << spare) - 1)) !== 0
}
