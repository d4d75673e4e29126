// Requests per address, as a token bucket each: a node's reports and a dashboard's reads
// pass, a flood from one address is answered 429 with the time to wait. The table of
// addresses is bounded; the least recently seen are forgotten first.
export interface RateLimitConfig {
  perSecond: number
  burst: number
  maxAddresses: number
}

export type RateDecision = { ok: true } | { ok: false; retryAfterSeconds: number }

interface Bucket { tokens: number; at: number }

export class AddressRateLimiter {
  private readonly buckets = new Map<string, Bucket>()

  constructor (private readonly config: RateLimitConfig, private readonly now: () => number = Date.now) {}

  take (address: string): RateDecision {
    const now = this.now()
    const c = this.config
    const b = this.buckets.get(address) ?? { tokens: c.burst, at: now }
    b.tokens = Math.min(c.burst, b.tokens + ((now - b.at) / 1000) * c.perSecond)
    b.at = now
    // Most recently seen last: the first entries are the ones to forget.
    this.buckets.delete(address)
    if (this.buckets.size >= c.maxAddresses) {
      const oldest = this.buckets.keys().next().value
      if (oldest !== undefined) this.buckets.delete(oldest)
    }
    this.buckets.set(address, b)
    if (b.tokens < 1) return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / c.perSecond)) }
    b.tokens -= 1
    return { ok: true }
  }

  get trackedAddresses (): number { return this.buckets.size }
}
