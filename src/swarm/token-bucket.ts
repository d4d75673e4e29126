// Caps upload bandwidth (the server's NIC is shared with everything else it does; a node
// may be asked to leave room for other traffic). Shared by every peer it is given to.
export const DEFAULT_BURST_SECONDS = 0.1
export const MIN_BURST_BYTES = 256 * 1024

export class TokenBucket {
  readonly rate: number
  private readonly burst: number
  private tokens: number
  private last: number

  constructor (bytesPerSecond: number, burstBytes = Math.max(MIN_BURST_BYTES, bytesPerSecond * DEFAULT_BURST_SECONDS)) {
    this.rate = bytesPerSecond
    this.burst = burstBytes
    this.tokens = burstBytes
    this.last = performance.now()
  }

  tryTake (bytes: number): boolean {
    this.refill()
    if (this.tokens < bytes) return false
    this.tokens -= bytes
    return true
  }

  /** How long until `bytes` can be taken. */
  msUntil (bytes: number): number {
    this.refill()
    return Math.max(1, Math.ceil((bytes - this.tokens) / this.rate * 1000))
  }

  private refill (): void {
    const now = performance.now()
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) / 1000 * this.rate)
    this.last = now
  }
}
