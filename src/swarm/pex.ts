// BEP 11 peer exchange over one connection: the peers we met or lost since the last
// message go out at most once a minute; the peers the remote side names are passed on.
import { EventEmitter } from 'node:events'
import { SiError } from '../errors.ts'
import { decodeBencode, encodeBencode, isBencodeDict } from '../torrent/bencode.ts'
import { COMPACT_IPV4_LENGTH, COMPACT_IPV6_LENGTH, decodeCompactPeers, encodeCompactPeers, type PeerAddress } from '../torrent/compact-peers.ts'
import { swarmConfig, type PexConfig } from './config.ts'

/** BEP 11: at most 50 added and 50 dropped peers per message. */
export const PEX_MAX_PEERS = 50
/** Far above 50 + 50 addresses with their flags: anything longer is not PEX. */
const MAX_PEX_MESSAGE_BYTES = 64 * 1024

function keyOf (a: PeerAddress): string { return `${a.host}:${a.port}` }

export interface PexEvents {
  /** an address the remote side named for the first time */
  peer: [addr: PeerAddress]
}

/**
 * Nothing goes out until `start`, and only through `send`, which the wire points at the
 * peer's ut_pex id once its extended handshake names one.
 */
export class PexExchange extends EventEmitter<PexEvents> {
  private readonly added = new Map<string, PeerAddress>()
  private readonly dropped = new Map<string, PeerAddress>()
  /** addresses the remote side told us about: never sent back to it */
  private readonly heard = new Set<string>()
  private timer: NodeJS.Timeout | undefined
  private lastReceivedAt = -Infinity
  private readonly config: Readonly<PexConfig>

  constructor (private readonly send: (payload: Buffer) => void, config?: Partial<PexConfig>) {
    super()
    this.config = swarmConfig(config)
  }

  addPeer (addr: PeerAddress): void {
    const key = keyOf(addr)
    if (this.heard.has(key)) return
    this.dropped.delete(key)
    this.added.set(key, addr)
  }

  dropPeer (addr: PeerAddress): void {
    const key = keyOf(addr)
    if (this.added.delete(key) || this.heard.has(key)) return
    this.dropped.set(key, addr)
  }

  start (): void {
    if (this.timer !== undefined) return
    this.timer = setInterval(() => this.flush(), this.config.pexIntervalMs)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** A ut_pex message from the remote side; throws ERR_PEER_PROTOCOL if it is malformed. */
  receive (payload: Buffer, now = Date.now()): void {
    if (now - this.lastReceivedAt < this.config.pexMinReceiveIntervalMs) return
    this.lastReceivedAt = now
    const fail = (problem: string): never => { throw new SiError('ERR_PEER_PROTOCOL', `peer sent a bad PEX message: ${problem}`) }
    let message
    try {
      message = decodeBencode(payload, { maxBytes: MAX_PEX_MESSAGE_BYTES })
    } catch (err) {
      return fail(err instanceof Error ? err.message : String(err))
    }
    if (!isBencodeDict(message)) return fail('not a dictionary')
    const named: PeerAddress[] = []
    for (const [field, family] of [['added', 4], ['added6', 6]] as const) {
      const value = message[field]
      if (value === undefined) continue
      if (!(value instanceof Uint8Array)) return fail(`${field} is not a byte string`)
      named.push(...decodeCompactPeers(value, family, field, fail).slice(0, PEX_MAX_PEERS))
    }
    for (const addr of named) {
      const key = keyOf(addr)
      if (this.heard.has(key)) continue
      this.heard.add(key)
      this.emit('peer', addr)
    }
  }

  private flush (): void {
    if (this.added.size === 0 && this.dropped.size === 0) return
    const added = takeSome(this.added)
    const dropped = takeSome(this.dropped)
    const added4 = encodeCompactPeers(added, 4)
    const added6 = encodeCompactPeers(added, 6)
    // One flag byte per added peer; we claim nothing about them (no encryption, no uTP).
    this.send(encodeBencode({
      added: added4,
      'added.f': Buffer.alloc(added4.length / COMPACT_IPV4_LENGTH),
      added6,
      'added6.f': Buffer.alloc(added6.length / COMPACT_IPV6_LENGTH),
      dropped: encodeCompactPeers(dropped, 4),
      dropped6: encodeCompactPeers(dropped, 6)
    }))
  }
}

function takeSome (pending: Map<string, PeerAddress>): PeerAddress[] {
  const out: PeerAddress[] = []
  for (const [key, addr] of pending) {
    if (out.length >= PEX_MAX_PEERS) break
    out.push(addr)
    pending.delete(key)
  }
  return out
}
