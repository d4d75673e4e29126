// Remembers peers that closed our connection before answering the handshake, and how long
// to wait before dialling each again (why: SwarmConfig.dialFirstRetryMs).
import { swarmConfig, type DialBackoffConfig } from './config.ts'

interface Refusal {
  count: number
  retryAt: number
}

export class DialBackoff {
  private readonly refusals = new Map<string, Refusal>()
  private readonly config: Readonly<DialBackoffConfig>

  constructor (config?: Partial<DialBackoffConfig>) {
    this.config = swarmConfig(config)
  }

  refused (key: string, now = Date.now()): void {
    const count = (this.refusals.get(key)?.count ?? 0) + 1
    const wait = Math.min(this.config.dialMaxRetryMs, this.config.dialFirstRetryMs * 2 ** (count - 1))
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
