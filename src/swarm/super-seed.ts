// The first seed's upload is the scarcest resource of a deployment: every byte it sends
// twice is a byte the swarm had to wait for. Like BEP 16 super-seeding, the seed hides its
// bitfield and reveals each peer only a few pieces at a time, always those it has handed
// out least, and reveals the next when the peer announces it holds one. Peers then fetch
// distinct pieces from the seed and the rest from each other.
export const REVEALED_PER_PEER = 2

export class SuperSeed {
  private readonly offered: Uint32Array
  private readonly random: () => number

  constructor (pieceCount: number, random: () => number = Math.random) {
    this.offered = new Uint32Array(pieceCount)
    this.random = random
  }

  /**
   * Pieces to reveal now to a peer that holds `peerHas` and still has `pending` revealed
   * pieces it has not announced; records them as offered.
   */
  reveal (peerHas: (index: number) => boolean, pending: Set<number>): number[] {
    const out: number[] = []
    const n = this.offered.length
    while (pending.size + out.length < REVEALED_PER_PEER) {
      const start = Math.floor(this.random() * n)
      let best = -1
      for (let k = 0; k < n; k++) {
        const i = (start + k) % n
        if (peerHas(i) || pending.has(i) || out.includes(i)) continue
        if (best < 0 || this.offered[i] < this.offered[best]) best = i
      }
      if (best < 0) break
      this.offered[best]++
      out.push(best)
    }
    return out
  }
}
