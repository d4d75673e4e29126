// The first seed's upload is the scarcest resource of a deployment: every byte it sends
// twice is a byte the swarm had to wait for. Like BEP 16 super-seeding, the seed hides its
// bitfield and reveals each peer only a few pieces at a time: pieces no peer holds and no
// other peer is fetching from it. A piece a peer already holds is never revealed (the
// others fetch it from that peer); one in flight to another peer is revealed again only
// once that offer has gone stale (no request for it for a while), so a silent peer cannot
// hold the swarm back while a slow but busy one keeps its piece.
export const REVEALED_PER_PEER = 2
export const STALE_OFFER_MS = 3_000

export class SuperSeed {
  private readonly inFlight: Uint16Array
  private readonly offeredAt: Float64Array
  private readonly pending = new Map<string, Set<number>>()
  private readonly random: () => number
  private readonly now: () => number

  constructor (pieceCount: number, opts: { random?: () => number; now?: () => number } = {}) {
    this.inFlight = new Uint16Array(pieceCount)
    this.offeredAt = new Float64Array(pieceCount)
    this.random = opts.random ?? Math.random
    this.now = opts.now ?? (() => performance.now())
  }

  /**
   * Pieces to reveal now to `peer`, which holds `peerHas`; `copies` counts the peers
   * holding a piece. The pieces count as in flight to the peer until it announces them.
   */
  reveal (peer: string, peerHas: (index: number) => boolean, copies: (index: number) => number): number[] {
    const mine = this.pending.get(peer) ?? new Set<number>()
    this.pending.set(peer, mine)
    for (const i of mine) if (peerHas(i)) this.release(peer, i)
    const out: number[] = []
    const n = this.inFlight.length
    const now = this.now()
    while (mine.size < REVEALED_PER_PEER) {
      const start = Math.floor(this.random() * n)
      let best = -1
      for (let k = 0; k < n; k++) {
        const i = (start + k) % n
        if (peerHas(i) || mine.has(i) || copies(i) > 0) continue
        if (this.inFlight[i] > 0 && now - this.offeredAt[i] < STALE_OFFER_MS) continue
        if (best < 0 || this.inFlight[i] < this.inFlight[best]) best = i
        if (this.inFlight[best] === 0) break
      }
      if (best < 0) break
      this.inFlight[best]++
      this.offeredAt[best] = now
      mine.add(best)
      out.push(best)
    }
    return out
  }

  /** A peer asked for a block of the piece: its offer is alive. */
  touch (index: number): void {
    if (this.inFlight[index] > 0) this.offeredAt[index] = this.now()
  }

  /** The peer announced a piece: whatever we revealed of it is no longer in flight. */
  release (peer: string, index: number): void {
    const mine = this.pending.get(peer)
    if (mine?.delete(index) === true && this.inFlight[index] > 0) this.inFlight[index]--
  }

  peerGone (peer: string): void {
    for (const i of this.pending.get(peer) ?? []) this.release(peer, i)
    this.pending.delete(peer)
  }
}
