// One TCP port for every torrent of a process: the server seeds all its images behind a
// single listener, and an agent's image and override torrents share one too. An incoming
// connection is handed to the torrent its handshake names.
import { createServer, type Server, type Socket } from 'node:net'
import { EventEmitter } from 'node:events'
import { SiError } from '../errors.ts'
import { Peer, PEER_SOCKET_READ_BUFFER } from './peer.ts'

export const MAX_PENDING_HANDSHAKES = 256

export interface IncomingPeerHandler {
  /** Takes over a handshaken incoming peer; the handler answers the handshake. */
  adoptIncoming (peer: Peer): void
}

export class PeerListener extends EventEmitter {
  private server: Server | undefined
  private readonly torrents = new Map<string, IncomingPeerHandler>()
  private readonly pending = new Set<Peer>()
  port = 0

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
    const server = this.server
    this.server = undefined
    if (server !== undefined) await new Promise<void>(resolve => server.close(() => resolve()))
  }

  private onConnection (socket: Socket): void {
    if (this.pending.size >= MAX_PENDING_HANDSHAKES) {
      socket.destroy()
      return
    }
    const peer = new Peer(socket, { outgoing: false })
    this.pending.add(peer)
    peer.awaitHandshake(infoHashHex => {
      const handler = this.torrents.get(infoHashHex)
      if (handler === undefined) peer.destroy()
      else handler.adoptIncoming(peer)
    }, () => this.pending.delete(peer))
  }
}
