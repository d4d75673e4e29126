// The peers of one torrent's swarm, as connections: which addresses are known, which are
// dialled (within the connection limit, its dial share and the per-address cap, with a
// backoff for peers that refused us), the handshakes, the one connection kept per peer id,
// idle peers making room for newcomers, the bans (by peer id, and by address once several
// of its ids lied), and the PEX introductions between peers. What is done with a
// connected peer is the swarm's.
import { EventEmitter } from 'node:events'
import { SiError } from '../errors.ts'
import { isThisMachine } from '../net-address.ts'
import { VERSION } from '../version.ts'
import type { PeerAddress } from '../torrent/compact-peers.ts'
import type { ConnectionConfig } from './config.ts'
import { DialBackoff } from './dial-backoff.ts'
import { Peer, dialPeer } from './peer.ts'
import { isServerPeerId } from './peer-id.ts'

/**
 * Peer ids whose address is remembered after they left, so that a conviction that comes
 * later (smart ban settles a shared piece once it is fetched again) still counts against
 * the address. Far more than any swarm's peers; a bound on memory only.
 */
const ADDRESSES_REMEMBERED = 4096

export interface ConnectionEvents {
  /** a handshaken peer of our torrent joined (a newer connection to the same peer id replaces the older) */
  attached: [peer: Peer]
  /** an attached peer left: closed, replaced, evicted or banned */
  detached: [peer: Peer]
  /** an attached peer's connection ended on an error */
  'peer-error': [key: string, err: Error]
  /** a peer, or an address, was banned for good: `key` names it, `reason` says what it did */
  'peer-banned': [key: string, reason: string]
}

export interface ConnectionOptions {
  infoHash: Buffer
  peerId: Buffer
  pieceCount: number
  /** the listener peers dial us on: its port goes into our extended handshake */
  listener: { readonly port: number }
  config: Readonly<ConnectionConfig>
  /** Whether more peers are wanted: dialling stops when this says no (a complete agent). */
  wantsPeers: () => boolean
  /** Whether idle peers are dropped with slots to spare (why not always: SwarmConfig.idleTimeoutMs). */
  idleTimeoutApplies: () => boolean
}

export class PeerConnections extends EventEmitter<ConnectionEvents> {
  private readonly opts: ConnectionOptions
  private readonly config: Readonly<ConnectionConfig>
  private readonly infoHashHex: string
  private readonly peerIdHex: string
  /** attached peers by peer id (hex) */
  private readonly attached = new Map<string, Peer>()
  /** keys (host:port) of dials not yet handshaken, with their host */
  private readonly connecting = new Map<string, string>()
  private readonly handshaking = new Set<Peer>()
  private readonly known = new Map<string, PeerAddress>()
  private readonly bannedIds = new Set<string>()
  private readonly bannedKeys = new Set<string>()
  private readonly bannedHosts = new Set<string>()
  /** address -> its peer ids convicted of sending corrupt data */
  private readonly convictedAt = new Map<string, Set<string>>()
  /** peer id -> the address it connected from, the oldest first (ADDRESSES_REMEMBERED) */
  private readonly addressOf = new Map<string, string>()
  /** addresses that turned out to be ourselves */
  private readonly selfKeys = new Set<string>()
  private readonly dialBackoff: DialBackoff
  private stopped = false

  constructor (opts: ConnectionOptions) {
    super()
    this.opts = opts
    this.config = opts.config
    this.infoHashHex = opts.infoHash.toString('hex')
    this.peerIdHex = opts.peerId.toString('hex')
    this.dialBackoff = new DialBackoff(opts.config)
  }

  get size (): number { return this.attached.size }
  get bannedCount (): number { return this.bannedIds.size }
  get (peerId: string): Peer | undefined { return this.attached.get(peerId) }
  values (): IterableIterator<Peer> { return this.attached.values() }

  /** Closes every connection, attached or still handshaking; nothing is dialled after. */
  stop (): void {
    this.stopped = true
    for (const peer of this.handshaking) peer.destroy()
    for (const peer of this.attached.values()) peer.destroy()
    this.attached.clear()
  }

  /** Peers learnt by any route: tracker, PEX, or given on the command line. */
  addPeerAddress (addr: PeerAddress): void {
    if (this.stopped || !Number.isInteger(addr.port) || addr.port <= 0 || addr.port > 65535) return
    this.known.set(`${addr.host}:${addr.port}`, addr)
    this.connectMore()
  }

  /** A peer that dialled us and whose handshake named our torrent. */
  adoptIncoming (peer: Peer): void {
    // Refused before our handshake, which the dialler takes as "full" and backs off from.
    const host = peer.remoteHost
    if (this.stopped || this.bannedHosts.has(host) || this.atAddressLimit(host)) { peer.destroy(); return }
    if (this.atConnectionLimit() && !this.evictIdle(Date.now())) { peer.destroy(); return }
    this.prepareWire(peer)
    peer.wire.handshake(this.opts.infoHash, this.opts.peerId)
    this.attach(peer)
  }

  /**
   * Dials known peers while the limit allows, but only up to its dial share (why:
   * SwarmConfig.dialShare). With the limit full of others' connections, an idle peer makes
   * room for one dial.
   */
  connectMore (): void {
    if (this.stopped || !this.opts.wantsPeers()) return
    let free = this.freeDialSlots()
    if (free.share <= 0) return
    const connected = new Set<string>()
    for (const peer of this.attached.values()) connected.add(peer.key)
    const now = Date.now()
    const mayDial = ([key, addr]: [string, PeerAddress]): boolean =>
      !this.connecting.has(key) && !this.bannedKeys.has(key) && !this.bannedHosts.has(addr.host) &&
      !this.selfKeys.has(key) && !connected.has(key) && this.dialBackoff.mayDial(key, now) && !this.atAddressLimit(addr.host)
    if (free.total <= 0) {
      if (!this.someKnown(mayDial) || !this.evictIdle(now)) return
      free = this.freeDialSlots()
    }
    let slots = Math.min(free.total, free.share)
    for (const entry of this.known) {
      if (slots <= 0) return
      if (!mayDial(entry)) continue
      this.connectTo(entry[0], entry[1])
      slots--
    }
  }

  private someKnown (test: (entry: [string, PeerAddress]) => boolean): boolean {
    for (const entry of this.known) if (test(entry)) return true
    return false
  }

  /**
   * Drops peers idle past SwarmConfig.idleTimeoutMs when that applies; called at every
   * rechoke, which also restarts the idle clock of peers found waiting on each other.
   */
  sweepIdle (now = Date.now()): void {
    const dropping = this.opts.idleTimeoutApplies()
    for (const peer of [...this.attached.values()]) {
      if (this.isExempt(peer)) continue
      if (isEngaged(peer)) peer.markUseful(now)
      else if (dropping && now - peer.lastUsefulAt >= this.config.idleTimeoutMs) this.dropIdle(peer)
    }
  }

  /**
   * Bans a peer that sent corrupt data: its id and address are never taken again, and once
   * SwarmConfig.banAddressAfterConvictions of the ids that came from one address are
   * convicted, that address is banned whatever id or port it comes with next.
   */
  ban (peerId: string, reason: string): void {
    if (this.bannedIds.has(peerId)) return
    this.bannedIds.add(peerId)
    const peer = this.attached.get(peerId)
    const who = peer?.key ?? `peer ${peerId}`
    if (peer !== undefined) this.bannedKeys.add(peer.key)
    this.emit('peer-banned', who, reason)
    peer?.destroy(new SiError('ERR_PIECE_HASH_MISMATCH', `${who} ${reason}`))
    const host = peer?.remoteHost ?? this.addressOf.get(peerId)
    if (host === undefined || isThisMachine(host) || this.bannedHosts.has(host)) return
    const convicted = this.convictedAt.get(host) ?? new Set<string>()
    this.convictedAt.set(host, convicted)
    convicted.add(peerId)
    if (convicted.size >= this.config.banAddressAfterConvictions) this.banAddress(host, convicted.size)
  }

  private banAddress (host: string, convictions: number): void {
    this.bannedHosts.add(host)
    const reason = `${convictions} of its peer ids sent corrupt data: every connection from or to this address is refused`
    this.emit('peer-banned', host, reason)
    for (const peer of [...this.attached.values(), ...this.handshaking]) {
      if (peer.remoteHost === host) peer.destroy(new SiError('ERR_PIECE_HASH_MISMATCH', `${host} ${reason}`))
    }
  }

  /**
   * How many more peers we may dial: `total` under the connection limit, `share` under the
   * dial share. The image server's seeder, once we dialled it and it answered as such,
   * takes no slot (a node whose slots are full of peers still reaches it).
   */
  private freeDialSlots (): { total: number; share: number } {
    const { maxConnections, dialShare } = this.config
    let total = this.connecting.size
    let dialled = this.connecting.size
    for (const peer of this.attached.values()) {
      if (this.isExempt(peer)) continue
      total++
      if (peer.outgoing) dialled++
    }
    return { total: maxConnections - total, share: Math.ceil(maxConnections * dialShare) - dialled }
  }

  private atConnectionLimit (): boolean {
    return this.freeDialSlots().total <= 0
  }

  /** Whether one more connection with `host` would pass SwarmConfig.maxConnectionsPerAddress. */
  private atAddressLimit (host: string): boolean {
    if (isThisMachine(host)) return false
    let count = 0
    for (const dialHost of this.connecting.values()) if (dialHost === host) count++
    for (const peer of this.attached.values()) if (peer.remoteHost === host) count++
    return count >= this.config.maxConnectionsPerAddress
  }

  /**
   * Only the seeder we dialled, for it is the only one we know to be the server: an
   * incoming peer can take any peer id.
   */
  private isExempt (peer: Peer): boolean {
    return peer.outgoing && isServerPeerId(peer.id)
  }

  /** Drops the peer idle longest, if one has been for SwarmConfig.idleEvictAfterMs; false if none. */
  private evictIdle (now: number): boolean {
    let victim: Peer | undefined
    let longest = this.config.idleEvictAfterMs
    for (const peer of this.attached.values()) {
      if (this.isExempt(peer) || isEngaged(peer)) continue
      const idle = now - peer.lastUsefulAt
      if (idle >= longest) {
        victim = peer
        longest = idle
      }
    }
    if (victim === undefined) return false
    this.dropIdle(victim)
    return true
  }

  /** A dropped idle peer is not dialled again at once: it had nothing for us a moment ago. */
  private dropIdle (peer: Peer): void {
    if (peer.outgoing) this.dialBackoff.refused(peer.key)
    peer.destroy()
  }

  private connectTo (key: string, addr: PeerAddress): void {
    this.connecting.set(key, addr.host)
    const socket = dialPeer(addr.host, addr.port)
    socket.setTimeout(this.config.connectTimeoutMs, () => socket.destroy())
    const giveUp = (): void => {
      this.connecting.delete(key)
      this.known.delete(key)
    }
    socket.once('error', giveUp)
    socket.once('connect', () => {
      socket.setTimeout(0)
      socket.off('error', giveUp)
      const peer = new Peer(socket, { outgoing: true, listenPort: addr.port, config: this.config })
      this.handshaking.add(peer)
      let answered = false
      peer.awaitHandshake(infoHashHex => {
        answered = true
        this.dialBackoff.succeeded(key)
        if (infoHashHex === this.infoHashHex) this.attach(peer)
        else peer.destroy(new SiError('ERR_PEER_PROTOCOL', `peer ${key} answered for another torrent`))
      }, () => {
        this.handshaking.delete(peer)
        this.connecting.delete(key)
        if (!answered) this.dialBackoff.refused(key)
      })
      this.prepareWire(peer)
      peer.wire.handshake(this.opts.infoHash, this.opts.peerId)
    })
  }

  private prepareWire (peer: Peer): void {
    peer.wire.setPieceCount(this.opts.pieceCount)
    peer.wire.extendedHandshake.p = this.opts.listener.port
    // BEP 10: how many requests we queue per peer, so clients like Transmission do not overrun it.
    peer.wire.extendedHandshake.reqq = this.config.maxQueuedRequests
    peer.wire.extendedHandshake.v = `swarmimager ${VERSION}`
    peer.wire.startKeepAlive()
  }

  private attach (peer: Peer): void {
    const id = peer.wire.peerId ?? ''
    peer.id = id
    if (this.stopped || peer.isClosed) { peer.destroy(); return }
    if (id === this.peerIdHex) {
      if (peer.outgoing) this.selfKeys.add(peer.key)
      peer.destroy()
      return
    }
    if (this.bannedIds.has(id) || this.bannedHosts.has(peer.remoteHost)) { peer.destroy(); return }
    const existing = this.attached.get(id)
    if (existing !== undefined) {
      // Both sides dialled at once: keep the connection opened by the smaller peer id, as the other side does.
      const keepNew = peer.outgoing === (this.peerIdHex < id)
      if (!keepNew) { peer.destroy(); return }
      this.detach(existing)
      existing.destroy()
    }
    this.attached.set(id, peer)
    this.rememberAddress(id, peer.remoteHost)
    peer.markUseful()
    peer.once('close', err => {
      // A replaced connection was detached already, and says nothing about the peer.
      if (!this.detach(peer)) return
      if (err !== undefined) this.emit('peer-error', peer.key, err)
      this.connectMore()
    })
    // An incoming peer's listening port is known only from its extended handshake.
    peer.wire.on('extended-handshake', () => { if (!peer.outgoing) this.introduceViaPex(peer) })
    peer.wire.pex.on('peer', addr => this.addPeerAddress(addr))
    this.introduceViaPex(peer)
    this.emit('attached', peer)
  }

  private rememberAddress (peerId: string, host: string): void {
    this.addressOf.delete(peerId)
    this.addressOf.set(peerId, host)
    if (this.addressOf.size > ADDRESSES_REMEMBERED) this.addressOf.delete(this.addressOf.keys().next().value as string)
  }

  /** Forgets an attached peer; false if it was not the one attached under its id. */
  private detach (peer: Peer): boolean {
    if (this.attached.get(peer.id) !== peer) return false
    this.attached.delete(peer.id)
    if (peer.listenPort !== undefined) {
      const gone = { host: peer.remoteHost, port: peer.listenPort }
      for (const other of this.attached.values()) other.wire.pex.dropPeer(gone)
    }
    this.emit('detached', peer)
    return true
  }

  /** Tells the new peer of the others and the others of it (those whose listening port is known). */
  private introduceViaPex (peer: Peer): void {
    const newAddr = peer.listenPort !== undefined ? { host: peer.remoteHost, port: peer.listenPort } : undefined
    for (const other of this.attached.values()) {
      if (other === peer) continue
      if (other.listenPort !== undefined) peer.wire.pex.addPeer({ host: other.remoteHost, port: other.listenPort })
      if (newAddr !== undefined) other.wire.pex.addPeer(newAddr)
    }
  }
}

/**
 * Whether the connection is in use, or one side waits on the other: we download from it,
 * or it waits for one of our upload slots. A peer that chokes us while we want its pieces
 * counts from its last unchoke; one we unchoked counts from its last request.
 */
function isEngaged (peer: Peer): boolean {
  const wire = peer.wire
  return (wire.amInterested && !wire.peerChoking) || (wire.peerInterested && wire.amChoking)
}
