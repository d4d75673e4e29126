// One TCP port for every torrent of a process: the server seeds all its images behind a
// single listener, and an agent's image and override torrents share one too. An incoming
// connection is handed to the torrent its handshake names. Until then it holds a pending
// slot, and silent connections must not be able to hold them all: one address gets a few,
// and when every slot is taken the connection silent longest makes room.
import { createServer, type Server, type Socket } from 'node:net'
import { EventEmitter } from 'node:events'
import { SiError } from '../errors.ts'
import { isThisMachine, normaliseHost } from '../net-address.ts'
import { Peer, PEER_SOCKET_READ_BUFFER } from './peer.ts'
import { swarmConfig, type ListenerConfig } from './config.ts'

export interface IncomingPeerHandler {
  /** Takes over a handshaken incoming peer; the handler answers the handshake. */
  adoptIncoming (peer: Peer): void
}

export interface PeerListenerEvents {
  /** the listening socket failed after it was up */
  warning: [err: Error]
}

/**
 * The peers that dial in are built with this listener's config (one listener serves many
 * swarms): give it the same peer-level overrides as the swarms behind it.
 */
export class PeerListener extends EventEmitter<PeerListenerEvents> {
  private server: Server | undefined
  private readonly torrents = new Map<string, IncomingPeerHandler>()
  /** connections waiting for their handshake, oldest first */
  private readonly pending = new Set<Peer>()
  /** the same, by remote address */
  private readonly pendingByHost = new Map<string, Set<Peer>>()
  private readonly config: Readonly<ListenerConfig>
  port = 0

  constructor (opts: { config?: Partial<ListenerConfig> } = {}) {
    super()
    this.config = swarmConfig(opts.config)
  }

  register (infoHashHex: string, handler: IncomingPeerHandler): void {
    this.torrents.set(infoHashHex, handler)
  }

  unregister (infoHashHex: string): void {
    this.torrents.delete(infoHashHex)
  }

  async start (host: string, port: number): Promise<number> {
    // highWaterMark sets the write buffer's mark too, which the upload pump does not use:
    // it measures writableLength against its own bound.
    const server = createServer({ highWaterMark: PEER_SOCKET_READ_BUFFER }, socket => this.onConnection(socket))
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new SiError('ERR_INVALID_ARGUMENT', `cannot listen for peers on ${host}:${port}: ${err.message}`, { cause: err })))
      server.listen(port, host, () => resolve())
    })
    server.on('error', err => this.emit('warning', err))
    const address = server.address()
    this.port = typeof address === 'object' && address !== null ? address.port : port
    return this.port
  }

  async stop (): Promise<void> {
    for (const peer of this.pending) peer.destroy()
    this.pending.clear()
    this.pendingByHost.clear()
    const server = this.server
    this.server = undefined
    if (server !== undefined) await new Promise<void>(resolve => server.close(() => resolve()))
  }

  /** Connections waiting for their handshake (all, or from one address). */
  pendingCount (host?: string): number {
    return host === undefined ? this.pending.size : this.pendingByHost.get(host)?.size ?? 0
  }

  private onConnection (socket: Socket): void {
    const host = normaliseHost(socket.remoteAddress ?? '')
    if (!isThisMachine(host) && this.pendingCount(host) >= this.config.maxPendingHandshakesPerAddress) {
      socket.destroy()
      return
    }
    if (this.pending.size >= this.config.maxPendingHandshakes) {
      const oldest = this.pending.values().next().value as Peer
      oldest.destroy(new SiError('ERR_PEER_PROTOCOL', 'no handshake yet, and its slot was needed'))
    }
    const peer = new Peer(socket, { outgoing: false, config: this.config })
    this.addPending(host, peer)
    peer.awaitHandshake(infoHashHex => {
      const handler = this.torrents.get(infoHashHex)
      if (handler === undefined) peer.destroy()
      else handler.adoptIncoming(peer)
    }, () => this.removePending(host, peer))
  }

  private addPending (host: string, peer: Peer): void {
    this.pending.add(peer)
    let ofHost = this.pendingByHost.get(host)
    if (ofHost === undefined) {
      ofHost = new Set()
      this.pendingByHost.set(host, ofHost)
    }
    ofHost.add(peer)
  }

  private removePending (host: string, peer: Peer): void {
    this.pending.delete(peer)
    const ofHost = this.pendingByHost.get(host)
    ofHost?.delete(peer)
    if (ofHost?.size === 0) this.pendingByHost.delete(host)
  }
}
