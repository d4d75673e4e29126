// Decides which blocks to ask which peer for. Pure bookkeeping: no sockets, no bytes.
//
// Policy for a deployment swarm on a LAN: every node starts empty at about the same time,
// so the first pieces are picked at random (rarest-first has nothing to rank yet and would
// make every node ask the seed for the same pieces), then rarest-first with a random
// tie-break so the seed's upload spreads distinct pieces into the swarm. Partial pieces are
// finished before new ones are started, so pieces become shareable quickly. When every
// missing block is already requested, endgame lets a block be requested from a second peer.
// A node whose every peer is a seed has nobody to share with: spreading pieces gains
// nothing, and it takes them in order (`inOrder`), so that extraction, which needs the
// payload in order, overlaps the download instead of waiting for the first piece.

import { swarmConfig, type PickerConfig } from './config.ts'

/** The block every client requests (BEP 3 practice; MAX_BLOCK_LENGTH is what we accept). */
export const BLOCK_SIZE = 16 * 1024

export interface BlockRequest { index: number; offset: number; length: number }

export interface ReceiveResult {
  /** the block had already arrived from another peer (endgame) */
  duplicate: boolean
  /** every block of the piece has arrived: verify it now */
  pieceComplete: boolean
  /** other peers that were asked for the same block and should get a cancel */
  cancelFrom: string[]
}

interface PartialPiece {
  blockCount: number
  received: Uint8Array
  receivedCount: number
  requesters: Array<Set<string> | undefined>
  /** when each block was last requested */
  requestedAt: Float64Array
  /** who delivered each block (for blame when the hash check fails) */
  senders: Array<string | undefined>
  /** a piece that failed before is fetched again from one peer only, so the next check convicts or clears it */
  owner: string | undefined
}

export class PiecePicker {
  readonly pieceCount: number
  readonly pieceLength: number
  readonly totalLength: number
  private readonly have: Uint8Array
  private readonly availability: Uint32Array
  private readonly partial = new Map<number, PartialPiece>()
  private readonly suspect = new Set<number>()
  private haveCount = 0
  private returns = 0
  private lastPickInEndgame = false
  /**
   * After the random start, new pieces are taken lowest index first instead of rarest
   * first (its owner sets it while every peer is a seed).
   */
  inOrder = false
  private readonly random: () => number
  private readonly now: () => number
  private readonly endgameWait: (requesters: Set<string>) => number
  private readonly config: Readonly<PickerConfig>

  /**
   * `endgameWait` tells how long the peers already asked for a block may take before a
   * second peer is asked too (a busy peer's queue takes longer to drain than an idle
   * one's); without it, `config.endgameAfterMs` for every block.
   */
  constructor (opts: {
    pieceCount: number
    pieceLength: number
    totalLength: number
    random?: () => number
    now?: () => number
    endgameWait?: (requesters: Set<string>) => number
    config?: Partial<PickerConfig>
  }) {
    this.pieceCount = opts.pieceCount
    this.pieceLength = opts.pieceLength
    this.totalLength = opts.totalLength
    this.have = new Uint8Array(opts.pieceCount)
    this.availability = new Uint32Array(opts.pieceCount)
    this.random = opts.random ?? Math.random
    this.now = opts.now ?? (() => performance.now())
    this.config = swarmConfig(opts.config)
    const after = this.config.endgameAfterMs
    this.endgameWait = opts.endgameWait ?? (() => after)
  }

  get completed (): number { return this.haveCount }
  get isComplete (): boolean { return this.haveCount === this.pieceCount }
  hasPiece (index: number): boolean { return this.have[index] === 1 }

  pieceSize (index: number): number {
    if (index < this.pieceCount - 1) return this.pieceLength
    return this.totalLength - this.pieceLength * (this.pieceCount - 1)
  }

  /** Bytes of verified pieces. */
  get verifiedBytes (): number {
    const lastHave = this.have[this.pieceCount - 1] === 1
    return lastHave
      ? (this.haveCount - 1) * this.pieceLength + this.pieceSize(this.pieceCount - 1)
      : this.haveCount * this.pieceLength
  }

  /** Whether the peer holds at least one piece we still lack. */
  wants (peerHas: (index: number) => boolean): boolean {
    for (let i = 0; i < this.pieceCount; i++) {
      if (this.have[i] === 0 && peerHas(i)) return true
    }
    return false
  }

  /** How many connected peers hold the piece. */
  copies (index: number): number { return this.availability[index] ?? 0 }

  peerHasPiece (index: number): void {
    if (index >= 0 && index < this.pieceCount) this.availability[index]++
  }

  peerLostPiece (index: number): void {
    if (index >= 0 && index < this.pieceCount && this.availability[index] > 0) this.availability[index]--
  }

  /**
   * Counts the times requested blocks went back to the pool (a peer gone, a request
   * abandoned, a piece failed). While it stands still, a peer for which `pick` found
   * nothing can offer only pieces it announces since: see `pickAnnounced`.
   */
  get returnCount (): number { return this.returns }

  /** Whether the last `pick` that found no fresh block looked for endgame duplicates, which depend on time. */
  get endgame (): boolean { return this.lastPickInEndgame }

  /** Up to `max` new block requests for this peer. */
  pick (peer: string, peerHas: (index: number) => boolean, max: number): BlockRequest[] {
    const out: BlockRequest[] = []
    if (max <= 0) return out
    this.pickFromPartials(peer, peerHas, max, out, false)
    while (out.length < max) {
      const index = this.chooseNewPiece(peerHas)
      if (index < 0) break
      this.startPiece(peer, index, max, out)
    }
    if (out.length === 0) {
      this.lastPickInEndgame = this.everythingRequested()
      if (this.lastPickInEndgame) this.pickFromPartials(peer, peerHas, max, out, true)
    }
    return out
  }

  /**
   * Up to `max` requests from one piece the peer has just announced. Equal to `pick` for a
   * peer whose last `pick` found nothing, if no block has gone back to the pool since
   * (`returnCount`) and that pick was not in endgame: then the announced piece is the only
   * thing the peer can newly offer. Costs O(blocks of the piece), where `pick` scans every
   * piece, and a node receives a have from each of its peers for every piece.
   */
  pickAnnounced (peer: string, index: number, max: number): BlockRequest[] {
    const out: BlockRequest[] = []
    if (max <= 0 || index < 0 || index >= this.pieceCount || this.have[index] === 1) return out
    if (this.partial.has(index)) this.takeBlocks(peer, index, max, out, false)
    else this.startPiece(peer, index, max, out)
    return out
  }

  private startPiece (peer: string, index: number, max: number, out: BlockRequest[]): void {
    this.partial.set(index, this.newPartial(index, this.suspect.has(index) ? peer : undefined))
    this.takeBlocks(peer, index, max, out, false)
  }

  /**
   * Endgame starts only when no block anywhere is left unrequested (of pieces some peer
   * can give): a peer that merely has nothing new to offer must not trigger duplicates.
   */
  private everythingRequested (): boolean {
    for (let i = 0; i < this.pieceCount; i++) {
      if (this.have[i] === 1) continue
      const piece = this.partial.get(i)
      if (piece === undefined) {
        if (this.availability[i] > 0) return false
        continue
      }
      for (let b = 0; b < piece.blockCount; b++) {
        if (piece.received[b] === 0 && (piece.requesters[b]?.size ?? 0) === 0) return false
      }
    }
    return true
  }

  /** Records a block's arrival. Returns undefined when the block was not expected at all. */
  received (peer: string, index: number, offset: number): ReceiveResult | undefined {
    const piece = this.partial.get(index)
    if (piece === undefined) return this.have[index] === 1 ? { duplicate: true, pieceComplete: false, cancelFrom: [] } : undefined
    const block = offset / BLOCK_SIZE
    if (!Number.isInteger(block) || block >= piece.blockCount) return undefined
    const requesters = piece.requesters[block]
    requesters?.delete(peer)
    if (piece.received[block] === 1) return { duplicate: true, pieceComplete: false, cancelFrom: [] }
    piece.received[block] = 1
    piece.receivedCount++
    piece.senders[block] = peer
    const cancelFrom = requesters === undefined ? [] : [...requesters]
    piece.requesters[block] = undefined
    return { duplicate: false, pieceComplete: piece.receivedCount === piece.blockCount, cancelFrom }
  }

  /** The peer will not deliver this block (choke, reject, cancel, timeout). */
  abandoned (peer: string, index: number, offset: number): void {
    const piece = this.partial.get(index)
    if (piece === undefined) return
    if (piece.requesters[offset / BLOCK_SIZE]?.delete(peer) === true) this.returns++
  }

  /**
   * The peer is gone: every block it was asked for goes back to the pool. Returns the
   * single-source pieces it owned, which restart from scratch (their bytes must be dropped).
   */
  peerGone (peer: string): number[] {
    this.returns++
    const restarted: number[] = []
    for (const [index, piece] of this.partial) {
      if (piece.owner === peer) {
        this.partial.delete(index)
        restarted.push(index)
        continue
      }
      for (const set of piece.requesters) set?.delete(peer)
    }
    return restarted
  }

  /** Who delivered each block of the piece, by block number. */
  senders (index: number): Array<string | undefined> {
    return [...(this.partial.get(index)?.senders ?? [])]
  }

  verified (index: number): void {
    this.partial.delete(index)
    this.suspect.delete(index)
    if (this.have[index] === 0) {
      this.have[index] = 1
      this.haveCount++
    }
  }

  /** The piece failed its hash check: every block must be fetched again, from one peer. */
  failed (index: number): void {
    this.returns++
    this.partial.delete(index)
    this.suspect.add(index)
  }

  private newPartial (index: number, owner: string | undefined): PartialPiece {
    const blockCount = Math.ceil(this.pieceSize(index) / BLOCK_SIZE)
    return {
      blockCount,
      received: new Uint8Array(blockCount),
      receivedCount: 0,
      requesters: new Array(blockCount).fill(undefined),
      requestedAt: new Float64Array(blockCount),
      senders: new Array(blockCount).fill(undefined),
      owner
    }
  }

  private pickFromPartials (peer: string, peerHas: (index: number) => boolean, max: number, out: BlockRequest[], endgame: boolean): void {
    // Closest to completion first: a finished piece can be shared at once.
    const candidates = [...this.partial.entries()]
      .filter(([index]) => peerHas(index))
      .sort((a, b) => b[1].receivedCount - a[1].receivedCount)
    for (const [index] of candidates) {
      if (out.length >= max) return
      this.takeBlocks(peer, index, max, out, endgame)
    }
  }

  private takeBlocks (peer: string, index: number, max: number, out: BlockRequest[], endgame: boolean): void {
    const piece = this.partial.get(index)
    if (piece === undefined || (piece.owner !== undefined && piece.owner !== peer)) return
    const size = this.pieceSize(index)
    const now = this.now()
    for (let block = 0; block < piece.blockCount && out.length < max; block++) {
      if (piece.received[block] === 1) continue
      const requesters = piece.requesters[block]
      const count = requesters?.size ?? 0
      if (endgame
        ? (count >= this.config.endgameRequestsPerBlock || requesters?.has(peer) === true ||
            (requesters !== undefined && count > 0 && now - piece.requestedAt[block] < this.endgameWait(requesters)))
        : count > 0) continue
      const set = requesters ?? new Set<string>()
      set.add(peer)
      piece.requesters[block] = set
      piece.requestedAt[block] = now
      const offset = block * BLOCK_SIZE
      out.push({ index, offset, length: Math.min(BLOCK_SIZE, size - offset) })
    }
  }

  private chooseNewPiece (peerHas: (index: number) => boolean): number {
    const n = this.pieceCount
    const randomPhase = this.haveCount < this.config.randomFirstPieces
    const inOrder = this.inOrder && !randomPhase
    // Either phase takes the first eligible piece of its scan; rarest-first scans them all.
    const firstEligible = randomPhase || inOrder
    const start = inOrder ? 0 : Math.floor(this.random() * n)
    let best = -1
    let bestAvailability = Infinity
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n
      if (this.have[i] === 1 || this.partial.has(i) || !peerHas(i)) continue
      if (firstEligible) return i
      if (this.availability[i] < bestAvailability) {
        best = i
        bestAvailability = this.availability[i]
      }
    }
    return best
  }
}
