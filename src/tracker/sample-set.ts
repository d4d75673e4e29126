// A set that draws a uniform random sample in time proportional to the sample, not to the
// set: a tracker answers every announce with up to numwant peers of a swarm that may hold
// 20 000, and a scan of the whole swarm per announce would cost it 1 300 scans a second.

/** Items in an array (for drawing by index) and their positions (for removal by swap). */
export class SampleSet<T> {
  private readonly items: T[] = []
  private readonly positions = new Map<T, number>()

  get size (): number { return this.items.length }

  has (item: T): boolean { return this.positions.has(item) }

  add (item: T): void {
    if (this.positions.has(item)) return
    this.positions.set(item, this.items.length)
    this.items.push(item)
  }

  delete (item: T): void {
    const at = this.positions.get(item)
    if (at === undefined) return
    const last = this.items.pop() as T
    this.positions.delete(item)
    if (last !== item) {
      this.items[at] = last
      this.positions.set(last, at)
    }
  }

  /** Up to `count` distinct items other than `except`, each subset equally likely. */
  sample (count: number, except?: T): T[] {
    const available = this.items.length - (except !== undefined && this.positions.has(except) ? 1 : 0)
    const wanted = Math.min(count, available)
    if (wanted <= 0) return []
    if (2 * wanted > this.items.length) return this.shuffledPrefix(wanted, except)
    // Few of many: draw positions until enough distinct ones; each draw succeeds with
    // probability above one half, so this takes under 2 x wanted draws on average.
    const chosen = new Set<number>()
    const picked: T[] = []
    while (picked.length < wanted) {
      const at = Math.floor(Math.random() * this.items.length)
      if (chosen.has(at)) continue
      chosen.add(at)
      const item = this.items[at]
      if (item !== except) picked.push(item)
    }
    return picked
  }

  /** Many of few: a partial Fisher-Yates shuffle of a copy. */
  private shuffledPrefix (wanted: number, except: T | undefined): T[] {
    const pool = except === undefined ? [...this.items] : this.items.filter(item => item !== except)
    for (let i = 0; i < wanted; i++) {
      const j = i + Math.floor(Math.random() * (pool.length - i))
      const swap = pool[i]
      pool[i] = pool[j]
      pool[j] = swap
    }
    return pool.slice(0, wanted)
  }
}
