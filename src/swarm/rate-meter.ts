// Bytes per second over a short sliding window, in one-second buckets.
export const RATE_WINDOW_SECONDS = 5
/**
 * A meter younger than its window divides by its age, not by the whole window (which
 * would understate a new peer's rate, and so its request pipeline, for five seconds); but
 * by no less than this, so that one early block does not read as a burst.
 */
export const MIN_RATE_SPAN_SECONDS = 0.5

export class RateMeter {
  private readonly buckets = new Float64Array(RATE_WINDOW_SECONDS)
  private lastSecond: number
  private readonly createdAt: number
  private readonly now: () => number
  total = 0

  constructor (now: () => number = Date.now) {
    this.now = now
    this.createdAt = now()
    this.lastSecond = Math.floor(this.createdAt / 1000)
  }

  add (bytes: number): void {
    this.advance()
    this.buckets[this.lastSecond % RATE_WINDOW_SECONDS] += bytes
    this.total += bytes
  }

  /** Average over the window's completed seconds plus the current one, pro rata. */
  rate (): number {
    this.advance()
    let sum = 0
    for (const b of this.buckets) sum += b
    const now = this.now()
    const intoSecond = (now % 1000) / 1000
    const window = RATE_WINDOW_SECONDS - 1 + Math.max(intoSecond, 0.001)
    const age = (now - this.createdAt) / 1000
    return sum / Math.min(window, Math.max(age, MIN_RATE_SPAN_SECONDS))
  }

  /**
   * Bytes of the busiest completed second in the window. A link's rate as soon as it has
   * been busy for a whole second, where `rate()` of a meter that sat idle before a transfer
   * began still averages in the idle seconds (a fifth of the rate in the first second).
   */
  busiestSecond (): number {
    this.advance()
    let best = 0
    for (let back = 1; back < RATE_WINDOW_SECONDS; back++) best = Math.max(best, this.buckets[(this.lastSecond - back) % RATE_WINDOW_SECONDS])
    return best
  }

  private advance (): void {
    const second = Math.floor(this.now() / 1000)
    const gap = Math.min(second - this.lastSecond, RATE_WINDOW_SECONDS)
    for (let i = 1; i <= gap; i++) this.buckets[(this.lastSecond + i) % RATE_WINDOW_SECONDS] = 0
    this.lastSecond = Math.max(second, this.lastSecond)
  }
}
