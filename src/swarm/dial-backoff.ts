// Remembers peers that closed our connection before answering the handshake: on a cluster
// that is a node whose connection limit is full, and dialling it again at every rechoke
// would only cost both sides a TCP handshake. Each refusal doubles the wait, up to a cap,
// so a node that frees a slot later is still found.

export const FIRST_RETRY_MS = 5_000
export const MAX_RETRY_MS = 60_000

interface Refusal {
  count: number
  retryAt: number
}

export class DialBackoff {
  private readonly refusals = new Map<string, Refusal>()

  refused (key: string, now = Date.now()): void {
    const count = (this.refusals.get(key)?.count ?? 0) + 1
    const wait = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (count - 1))
    this.refusals.set(key, { count, retryAt: now + wait })
  }

  succeeded (key: string): void {
    this.refusals.delete(key)
  }

  mayDial (key: string, now = Date.now()): boolean {
    const refusal = this.refusals.get(key)
    return refusal === undefined || now >= refusal.retryAt
  }
}
