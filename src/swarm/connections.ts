// The peers of one torrent's swarm, as connections: which addresses are known, which are
// dialled (within the connection limit and its dial share, with a backoff for peers that
// refused us), the handshakes, the one connection kept per peer id, the bans, and the
// PEX introductions between peers. What is done with a connected peer is the swarm's.
import { EventEmitter } from 'node:events'
import { SiError } from '../errors.ts'
import { VERSION } from '../version.ts'
import type { PeerAddress } from '../torrent/compact-peers.ts'
import type { ConnectionConfig } from './config.ts'
import { DialBackoff } from './dial-backoff.ts'
import { Peer, dialPeer } from './peer.ts'
import { isServerPeerId } from './peer-id.ts'

export interface ConnectionEvents {
  /** a handshaken peer of our torrent joined (a newer connection to the same peer id replaces the older) */
  attached: [peer: Peer]
  /** an attached peer left: closed, replaced or banned */
  detached: [peer: Peer]
  /** an attached peer's connection ended on an error */
  'peer-error': [key: string, err: Error]
  /** a peer was banned for good: `key` names it, `reason` says what it did */
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
}

export class PeerConnections extends EventEmitter<ConnectionEvents> {
  private readonly opts: ConnectionOptions
  private readonly config: Readonly<ConnectionConfig>
  private readonly infoHashHex: string
  private readonly peerIdHex: string
  /** attached peers by peer id (hex) */
  private readonly attached = new Map<string, Peer>()
  /** keys (host:port) of dials not yet handshaken */
  private readonly connecting = new Set<string>()
  private readonly handshaking = new Set<Peer>()
  private readonly known = new Map<string, PeerAddress>()
  private readonly bannedIds = new Set<string>()
  private readonly bannedKeys = new Set<string>()
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
    if (this.stopped || this.atConnectionLimit()) { peer.destroy(); return }
    this.prepareWire(peer)
    peer.wire.handshake(this.opts.infoHash, this.opts.peerId)
    this.attach(peer)
  }

  /**
   * Dials known peers while the limit allows, but only up to its dial share (why:
   * SwarmConfig.dialShare).
   */
  connectMore (): void {
    if (this.stopped || !this.opts.wantsPeers()) return
    const { maxConnections, dialShare } = this.config
    const { total, dialled } = this.nodeConnections()
    let free = Math.min(maxConnections - total, Math.ceil(maxConnections * dialShare) - dialled)
    if (free <= 0) return
    const connected = new Set<string>()
    for (const peer of this.attached.values()) connected.add(peer.key)
    const now = Date.now()
    for (const [key, addr] of this.known) {
      if (free <= 0) return
      if (this.connecting.has(key) || this.bannedKeys.has(key) || this.selfKeys.has(key) || connected.has(key)) continue
      if (!this.dialBackoff.mayDial(key, now)) continue
      this.connectTo(key, addr)
      free--
    }
  }

  /** Bans a peer that sent corrupt data: its id and address are never taken again. */
  ban (peerId: string, reason: string): void {
    if (this.bannedIds.has(peerId)) return
    this.bannedIds.add(peerId)
    const peer = this.attached.get(peerId)
    const who = peer?.key ?? `peer ${peerId}`
    if (peer !== undefined) this.bannedKeys.add(peer.key)
    this.emit('peer-banned', who, reason)
    peer?.destroy(new SiError('ERR_PIECE_HASH_MISMATCH', `${who} ${reason}`))
  }

  /**
   * Connections to other nodes, which the limit counts, and how many of them we dialled
   * (pending dials included): the image server's seeder never takes a slot, so a node
   * whose slots are full of peers still reaches it.
   */
  private nodeConnections (): { total: number; dialled: number } {
    let total = this.connecting.size
    let dialled = this.connecting.size
    for (const peer of this.attached.values()) {
      if (isServerPeerId(peer.id)) continue
      total++
      if (peer.outgoing) dialled++
    }
    return { total, dialled }
  }

  private atConnectionLimit (): boolean {
    return this.nodeConnections().total >= this.config.maxConnections
  }

  private connectTo (key: string, addr: PeerAddress): void {
    this.connecting.add(key)
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
    if (this.bannedIds.has(id)) { peer.destroy(); return }
    const existing = this.attached.get(id)
    if (existing !== undefined) {
      // Both sides dialled at once: keep the connection opened by the smaller peer id, as the other side does.
      const keepNew = peer.outgoing === (this.peerIdHex < id)
      if (!keepNew) { peer.destroy(); return }
      this.detach(existing)
      existing.destroy()
    }
    this.attached.set(id, peer)
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
