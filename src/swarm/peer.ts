// One connection to a remote peer: the socket, the guard, the Wire, and the upload side
// with the backpressure that bittorrent-protocol lacks (it pushes every piece we answer
// into an unbounded buffer and queues every request a peer sends).
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import Wire from 'bittorrent-protocol'
import { SiError, describeError } from '../errors.ts'
import { WireGuard, MAX_BLOCK_LENGTH } from './wire-guard.ts'
import { RateMeter } from './rate-meter.ts'
import type { TokenBucket } from './token-bucket.ts'

/** Bytes of answered blocks allowed to wait in user space for the socket. */
export const UPLOAD_HIGH_WATER = 1024 * 1024
/** A peer asking for more blocks at once than this is misbehaving. */
export const MAX_QUEUED_REQUESTS = 2048
export const HANDSHAKE_TIMEOUT_MS = 10_000

export type ReadBlock = (index: number, offset: number, length: number) => Promise<Buffer>
type Respond = (err: Error | null, block?: Uint8Array) => void

interface QueuedRequest { index: number; offset: number; length: number; respond: Respond }

export class Peer extends EventEmitter {
  readonly socket: Socket
  readonly wire: Wire
  readonly guard: WireGuard
  readonly outgoing: boolean
  readonly remoteHost: string
  /** the port the remote peer listens on, when known (outgoing, or its extended handshake) */
  listenPort: number | undefined
  id = ''
  readonly downloadRate = new RateMeter()
  readonly uploadRate = new RateMeter()
  /** blocks we asked for and have not received */
  outstanding = 0
  unchokedSince = 0
  waitingSince = Date.now()
  hashFailures = 0
  private readonly uploads: QueuedRequest[] = []
  private readingBytes = 0
  private readBlock: ReadBlock | undefined
  private uploadLimit: TokenBucket | undefined
  private throttleTimer: NodeJS.Timeout | undefined
  private repump: NodeJS.Immediate | undefined
  private closed = false

  constructor (socket: Socket, opts: { outgoing: boolean; listenPort?: number }) {
    super()
    this.socket = socket
    this.outgoing = opts.outgoing
    this.remoteHost = normaliseHost(socket.remoteAddress ?? '')
    this.listenPort = opts.listenPort
    this.wire = new Wire(opts.outgoing ? 'tcpOutgoing' : 'tcpIncoming')
    this.guard = new WireGuard()
    socket.setNoDelay(true)
    socket.pipe(this.guard).pipe(this.wire as unknown as NodeJS.WritableStream)
    this.wire.pipe(socket)
    const fail = (err: Error): void => this.destroy(err)
    socket.on('error', fail)
    this.guard.on('error', fail)
    socket.on('close', () => this.destroy())
    this.wire.on('close', () => this.destroy())
    this.wire.on('finish', () => this.destroy())
    this.wire.on('error', fail)
    socket.on('drain', () => this.pump())
    this.wire.on('download', (n: number) => this.downloadRate.add(n))
    this.wire.on('upload', (n: number) => this.uploadRate.add(n))
    this.wire.on('request', (index: number, offset: number, length: number, respond: Respond) => this.onRequest(index, offset, length, respond))
    // A cancelled block is not read from disk at all (the Wire would drop the answer anyway).
    this.wire.on('cancel', (index: number, offset: number, length: number) => this.dropQueued(index, offset, length))
    this.wire.on('extended', (ext: string) => {
      if (ext !== 'handshake') return
      const p = this.wire.peerExtendedHandshake.p
      if (typeof p === 'number' && Number.isInteger(p) && p > 0 && p < 65536 && this.listenPort === undefined) this.listenPort = p
    })
  }

  get key (): string { return `${this.remoteHost}:${this.listenPort ?? `in-${this.socket.remotePort ?? 0}`}` }
  get isClosed (): boolean { return this.closed }

  /** Starts answering requests from the given source (only once the torrent is known). */
  serveFrom (readBlock: ReadBlock, validate: (index: number, offset: number, length: number) => string | undefined, uploadLimit?: TokenBucket): void {
    this.readBlock = readBlock
    this.validateRequest = validate
    this.uploadLimit = uploadLimit
  }

  /**
   * Calls back when the remote handshake arrives; drops the connection if it does not
   * come in time. `settled` runs once either way, to release whoever waits for it.
   */
  awaitHandshake (onHandshake: (infoHashHex: string) => void, settled: () => void): void {
    let done = false
    const settle = (): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      settled()
    }
    const timer = setTimeout(() => this.destroy(new SiError('ERR_PEER_PROTOCOL', 'no handshake in time')), HANDSHAKE_TIMEOUT_MS)
    timer.unref()
    this.once('close', settle)
    this.wire.once('handshake', (infoHashHex: string) => {
      settle()
      if (!this.closed) onHandshake(infoHashHex)
    })
  }

  destroy (err?: Error): void {
    if (this.closed) return
    this.closed = true
    this.uploads.length = 0
    clearTimeout(this.throttleTimer)
    clearImmediate(this.repump)
    this.socket.destroy()
    this.wire.destroy()
    this.emit('close', err)
  }

  private validateRequest: (index: number, offset: number, length: number) => string | undefined = () => 'no torrent yet'

  private onRequest (index: number, offset: number, length: number, respond: Respond): void {
    const problem = length > MAX_BLOCK_LENGTH || length <= 0 ? `block length ${length}` : this.validateRequest(index, offset, length)
    if (problem !== undefined) {
      this.destroy(new SiError('ERR_PEER_PROTOCOL', `peer requested an invalid block (piece ${index}, offset ${offset}, length ${length}): ${problem}`))
      return
    }
    if (this.uploads.length >= MAX_QUEUED_REQUESTS) {
      this.destroy(new SiError('ERR_PEER_PROTOCOL', `peer has more than ${MAX_QUEUED_REQUESTS} requests queued`))
      return
    }
    this.uploads.push({ index, offset, length, respond })
    this.pump()
  }

  private dropQueued (index: number, offset: number, length: number): void {
    const at = this.uploads.findIndex(r => r.index === index && r.offset === offset && r.length === length)
    if (at >= 0) this.uploads.splice(at, 1)
  }

  /** Answers queued requests while the socket keeps up. */
  private pump (): void {
    const readBlock = this.readBlock
    if (readBlock === undefined || this.throttleTimer !== undefined) return
    while (!this.closed && this.uploads.length > 0 && this.bufferedBytes() < UPLOAD_HIGH_WATER) {
      const req = this.uploads[0]
      if (this.wire.amChoking) { this.uploads.shift(); continue }
      if (this.uploadLimit !== undefined && !this.uploadLimit.tryTake(req.length)) {
        this.throttleTimer = setTimeout(() => { this.throttleTimer = undefined; this.pump() }, this.uploadLimit.msUntil(req.length))
        return
      }
      this.uploads.shift()
      this.readingBytes += req.length
      readBlock(req.index, req.offset, req.length).then(block => {
        this.readingBytes -= req.length
        if (!this.closed) req.respond(null, block)
        this.pump()
      }, err => {
        this.readingBytes -= req.length
        this.destroy(new SiError('ERR_STAGING', `cannot read block for peer: ${describeError(err)}`, { cause: err }))
      })
    }
    // Answered blocks wait in the Wire's buffer until it flushes them into the socket on a
    // later tick, and that flush fires no event: look again then, or the queue stalls.
    // Bytes held by the socket itself are followed by its 'drain'.
    if (!this.closed && this.uploads.length > 0 && this.repump === undefined && this.socket.writableLength < UPLOAD_HIGH_WATER) {
      this.repump = setImmediate(() => { this.repump = undefined; this.pump() })
    }
  }

  private bufferedBytes (): number {
    return this.socket.writableLength + (this.wire._readableState?.buffered ?? 0) + this.readingBytes
  }
}

export function normaliseHost (address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address
}
