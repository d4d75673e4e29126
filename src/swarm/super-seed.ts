// The first seed's upload is the scarcest resource of a deployment: every byte it sends
// twice is a byte the swarm had to wait for. Like BEP 16 super-seeding, the seed hides its
// bitfield and reveals pieces a few at a time: pieces no peer holds and no other peer is
// fetching from it. A piece a peer already holds is not revealed (the others fetch it
// from that peer); one in flight to another peer is revealed again only once that offer
// has gone stale (no request for it for a while), so a silent peer cannot hold the swarm
// back while a slow but busy one keeps its piece.
//
// Beyond BEP 16, the seed keeps only as many offers alive at once as its link can serve in
// a moment (`capacity`), and gives each freed slot to the peer that has had the fewest.
// Showing every peer a piece at once would split the seed's link N ways: each first piece
// would take N times longer to arrive, and nobody could pass anything on meanwhile.
//
// A slot is freed when the peer announces the piece or when the offer goes stale; only
// live offers count against a peer's share. Standard clients (aria2c) do not announce a
// piece to the peer they got it from: when stale offers still counted, a lone aria2c
// filled its share with pieces it already had and the seed stopped revealing.
//
// No peer may lead the least-served peer still fetching from the seed by more than
// `superSeedMaxShareLead` pieces. Without it the seed's pieces went to the nodes at the
// pace each finished its offers, and that pace fed itself: a node holding many unique
// pieces is asked for them by everyone, sends more than it receives from its peers, so its
// download link has room for the seed's flow, which brings it more unique pieces (the
// figures: SwarmConfig.superSeedMaxShareLead). Only peers with a live offer count (one
// that holds every piece has none), so a peer that stopped asking cannot hold the others
// back.
//
// A peer that has had no such offer for `superSeedStarvedAfterMs` is shown pieces that
// other peers hold too, rarest first (why: SwarmConfig.superSeedStarvedAfterMs).
import { swarmConfig, type SuperSeedConfig } from './config.ts'

export interface SeedCandidate {
  id: string
  has: (index: number) => boolean
}

export interface Offer { peer: string; index: number }

interface PeerRecord {
  pending: Set<number>
  /** pieces revealed to this peer so far */
  revealed: number
  lastOfferAt: number
  /** when it was last shown a piece no other peer held (or first seen) */
  lastUniqueOfferAt: number
}

export class SuperSeed {
  private readonly inFlight: Uint16Array
  private readonly offeredAt: Float64Array
  private readonly records = new Map<string, PeerRecord>()
  private readonly random: () => number
  private readonly now: () => number
  private readonly config: Readonly<SuperSeedConfig>

  constructor (pieceCount: number, opts: { random?: () => number; now?: () => number; config?: Partial<SuperSeedConfig> } = {}) {
    this.inFlight = new Uint16Array(pieceCount)
    this.offeredAt = new Float64Array(pieceCount)
    this.random = opts.random ?? Math.random
    this.now = opts.now ?? (() => performance.now())
    this.config = swarmConfig(opts.config)
  }

  /**
   * Offers to make now. At most `capacity` offers stay alive at once; slots go first to
   * the candidates that have been shown the fewest pieces, one each per round. `copies`
   * counts the connected peers holding a piece.
   */
  allocate (candidates: SeedCandidate[], copies: (index: number) => number, capacity: number): Offer[] {
    const now = this.now()
    const entries = candidates.map(c => ({ c, r: this.record(c.id) }))
    for (const { c, r } of entries) for (const i of r.pending) if (c.has(i)) this.release(c.id, i)
    let live = this.liveOffers(now)
    const perPeer = Math.max(this.config.superSeedOffersPerPeer, Math.floor(capacity / Math.max(1, candidates.length)))
    entries.sort((a, b) => a.r.revealed - b.r.revealed || a.r.lastOfferAt - b.r.lastOfferAt)
    const pace = this.pace(entries, now)
    const out: Offer[] = []
    let progress = true
    while (progress && live < capacity) {
      progress = false
      for (const { c, r } of entries) {
        if (live >= capacity) break
        if (this.livePending(r, now) >= perPeer) continue
        if (r.revealed >= pace + this.config.superSeedMaxShareLead) continue
        let index = this.choosePiece(c, r, copies, now)
        if (index >= 0) r.lastUniqueOfferAt = now
        else if (now - r.lastUniqueOfferAt >= this.config.superSeedStarvedAfterMs) index = this.chooseHeldPiece(c, r, copies, now)
        if (index < 0) continue
        this.inFlight[index]++
        this.offeredAt[index] = now
        r.pending.add(index)
        r.revealed++
        r.lastOfferAt = now
        out.push({ peer: c.id, index })
        live++
        progress = true
      }
    }
    return out
  }

  /** A peer asked for a block of the piece: its offer is alive. */
  touch (index: number): void {
    if (this.inFlight[index] > 0) this.offeredAt[index] = this.now()
  }

  /** The peer announced a piece: whatever we revealed of it is no longer in flight. */
  release (peer: string, index: number): void {
    const record = this.records.get(peer)
    if (record?.pending.delete(index) === true && this.inFlight[index] > 0) this.inFlight[index]--
  }

  peerGone (peer: string): void {
    for (const i of this.records.get(peer)?.pending ?? []) this.release(peer, i)
    this.records.delete(peer)
  }

  private record (peer: string): PeerRecord {
    let record = this.records.get(peer)
    if (record === undefined) {
      record = { pending: new Set(), revealed: 0, lastOfferAt: -Infinity, lastUniqueOfferAt: this.now() }
      this.records.set(peer, record)
    }
    return record
  }

  /** The fewest pieces shown to a peer still fetching some: the pace the others keep to. */
  private pace (entries: Array<{ r: PeerRecord }>, now: number): number {
    let least = Infinity
    for (const { r } of entries) if (r.revealed < least && this.livePending(r, now) > 0) least = r.revealed
    return least
  }

  private liveOffers (now: number): number {
    let live = 0
    for (const record of this.records.values()) live += this.livePending(record, now)
    return live
  }

  private livePending (record: PeerRecord, now: number): number {
    let live = 0
    for (const i of record.pending) if (now - this.offeredAt[i] < this.config.superSeedStaleOfferMs) live++
    return live
  }

  /** A piece nobody holds, preferring one not in flight at all, else one whose offer went stale. */
  private choosePiece (c: SeedCandidate, r: PeerRecord, copies: (index: number) => number, now: number): number {
    const n = this.inFlight.length
    const start = Math.floor(this.random() * n)
    let best = -1
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n
      if (copies(i) > 0 || !this.isOfferable(c, r, i, now)) continue
      if (best < 0 || this.inFlight[i] < this.inFlight[best]) best = i
      if (this.inFlight[best] === 0) break
    }
    return best
  }

  /** For a starved peer: a piece it lacks that others hold, the fewest copies first. */
  private chooseHeldPiece (c: SeedCandidate, r: PeerRecord, copies: (index: number) => number, now: number): number {
    let best = -1
    for (let i = 0; i < this.inFlight.length; i++) {
      if (!this.isOfferable(c, r, i, now)) continue
      if (best < 0 || copies(i) < copies(best)) best = i
    }
    return best
  }

  /** The peer lacks the piece, it is not on offer to the peer yet, and no live offer of it is out. */
  private isOfferable (c: SeedCandidate, r: PeerRecord, i: number, now: number): boolean {
    if (c.has(i) || r.pending.has(i)) return false
    return this.inFlight[i] === 0 || now - this.offeredAt[i] >= this.config.superSeedStaleOfferMs
  }
}
