// One connection to a remote peer: the socket, the wire over it, and the upload side,
// which answers the peer's requests from the store no faster than the socket takes them.
import { EventEmitter } from 'node:events'
import { connect, type Socket } from 'node:net'
import { SiError, describeError } from '../errors.ts'
import { normaliseHost } from '../net-address.ts'
import { PeerWire } from './wire.ts'
import { MAX_BLOCK_LENGTH } from './wire-reader.ts'
import { RateMeter } from './rate-meter.ts'
import type { TokenBucket } from './token-bucket.ts'
import { swarmConfig, type PeerConfig } from './config.ts'

/**
 * Readable buffer of an accepted peer socket: one chunk, so that a paused socket stops
 * reading (the read hold, SwarmConfig.readHoldMs, relies on it). Dialled sockets read
 * into a shared buffer instead (dialPeer), where pausing stops the reads themselves.
 */
export const PEER_SOCKET_READ_BUFFER = 1

export type ReadBlock = (index: number, offset: number, length: number) => Promise<Buffer>

interface QueuedRequest {
  index: number
  offset: number
  length: number
  /** our choke count when it came in: a choke since voids it */
  chokeCount: number
  cancelled: boolean
}

/**
 * Bytes every dialled peer socket reads into: a new buffer per read (64 KiB on a fast
 * link) was most of what the agent left for the collector on a large image. One buffer
 * serves every socket: each read is handled whole before the next one is made.
 */
const SHARED_READ_BYTES = 64 * 1024
let sharedReadBuffer: Buffer | undefined

/** Where a dialled socket's reads go, once its Peer exists; copies of earlier ones wait. */
interface ReadSink { feed?: (chunk: Buffer) => void; early: Buffer[] }
const readSinks = new WeakMap<Socket, ReadSink>()

/**
 * Opens a connection to a peer that reads into the shared buffer (its Peer consumes each
 * read before returning), paused by the read hold like any socket.
 */
export function dialPeer (host: string, port: number): Socket {
  sharedReadBuffer ??= Buffer.allocUnsafeSlow(SHARED_READ_BYTES)
  const sink: ReadSink = { early: [] }
  const socket = connect({
    host,
    port,
    onread: {
      buffer: sharedReadBuffer,
      callback: (bytes: number, buffer: Uint8Array): boolean => {
        const chunk = Buffer.from(buffer.buffer, buffer.byteOffset, bytes)
        if (sink.feed !== undefined) sink.feed(chunk)
        else sink.early.push(Buffer.from(chunk))
        // false would pause the socket; the read hold pauses it when it must.
        return true
      }
    }
  })
  readSinks.set(socket, sink)
  return socket
}

export interface PeerEvents {
  /** the connection is gone; `err` says why when it was not an orderly close */
  close: [err?: Error]
}

export class Peer extends EventEmitter<PeerEvents> {
  readonly socket: Socket
  readonly wire: PeerWire
  readonly outgoing: boolean
  readonly remoteHost: string
  /** the port the remote peer listens on, when known (outgoing, or its extended handshake) */
  listenPort: number | undefined
  id = ''
  readonly downloadRate = new RateMeter()
  /** blocks we asked for and have not received */
  outstanding = 0
  unchokedSince = 0
  waitingSince = Date.now()
  /**
   * ms (Date.now): when this connection was last of use: a block or a request came in, the
   * peer said it is interested or unchoked us, or the swarm saw one side waiting for the
   * other (markUseful). The idle rules (SwarmConfig.idleEvictAfterMs) count from here.
   */
  lastUsefulAt = Date.now()
  private readonly uploads: QueuedRequest[] = []
  /** requests being read from the store, so that a cancel can still stop their answer */
  private readonly reading = new Set<QueuedRequest>()
  private readingBytes = 0
  private readBlock: ReadBlock | undefined
  private uploadLimit: TokenBucket | undefined
  private throttleTimer: NodeJS.Timeout | undefined
  private readHoldTimer: NodeJS.Timeout | undefined
  private closed = false
  private readonly config: Readonly<PeerConfig>

  constructor (socket: Socket, opts: { outgoing: boolean; listenPort?: number; config?: Partial<PeerConfig> }) {
    super()
    this.socket = socket
    this.outgoing = opts.outgoing
    this.remoteHost = normaliseHost(socket.remoteAddress ?? '')
    this.listenPort = opts.listenPort
    this.config = swarmConfig(opts.config)
    this.wire = new PeerWire(socket, this.config)
    socket.setNoDelay(true)
    const sink = readSinks.get(socket)
    if (sink === undefined) {
      socket.on('data', (chunk: Buffer) => this.onData(chunk, false))
    } else {
      for (const chunk of sink.early) this.onData(chunk, false)
      sink.early.length = 0
      sink.feed = chunk => this.onData(chunk, true)
    }
    socket.on('error', (err: Error) => this.destroy(err))
    socket.on('close', () => this.destroy())
    socket.on('drain', () => this.pump())
    this.wire.on('download', n => { this.downloadRate.add(n); this.markUseful() })
    this.wire.on('interested', () => this.markUseful())
    this.wire.on('unchoke', () => this.markUseful())
    this.wire.on('request', (index, offset, length) => this.onRequest(index, offset, length))
    // A cancelled block is not read from disk at all, nor sent if its read is under way.
    this.wire.on('cancel', (index, offset, length) => this.cancelUpload(index, offset, length))
    this.wire.on('extended-handshake', () => {
      const p = this.wire.peerExtendedHandshake.p
      if (typeof p === 'number' && Number.isInteger(p) && p > 0 && p < 65536 && this.listenPort === undefined) this.listenPort = p
    })
  }

  get key (): string { return `${this.remoteHost}:${this.listenPort ?? `in-${this.socket.remotePort ?? 0}`}` }
  get isClosed (): boolean { return this.closed }

  markUseful (now = Date.now()): void {
    this.lastUsefulAt = now
  }

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
    const timer = setTimeout(() => this.destroy(new SiError('ERR_PEER_PROTOCOL', 'no handshake in time')), this.config.handshakeTimeoutMs)
    timer.unref()
    this.once('close', settle)
    this.wire.once('handshake', h => {
      settle()
      if (!this.closed) onHandshake(h.infoHash.toString('hex'))
    })
  }

  destroy (err?: Error): void {
    if (this.closed) return
    this.closed = true
    this.uploads.length = 0
    this.reading.clear()
    clearTimeout(this.throttleTimer)
    clearTimeout(this.readHoldTimer)
    this.wire.close()
    this.socket.destroy()
    this.emit('close', err)
  }

  /** `transient`: the chunk is the shared read buffer, read into again after this returns. */
  private onData (chunk: Buffer, transient: boolean): void {
    if (this.closed) return
    try {
      this.wire.feed(chunk, transient)
    } catch (err) {
      this.destroy(err instanceof Error ? err : new SiError('ERR_PEER_PROTOCOL', String(err)))
      return
    }
    if (chunk.length < this.config.readHoldBelowBytes && this.outstanding > 0) this.holdReads()
  }

  private holdReads (): void {
    if (this.readHoldTimer !== undefined || this.closed) return
    this.socket.pause()
    this.readHoldTimer = setTimeout(() => {
      this.readHoldTimer = undefined
      if (!this.closed) this.socket.resume()
    }, this.config.readHoldMs)
  }

  private validateRequest: (index: number, offset: number, length: number) => string | undefined = () => 'no torrent yet'

  private onRequest (index: number, offset: number, length: number): void {
    const problem = length > MAX_BLOCK_LENGTH || length <= 0 ? `block length ${length}` : this.validateRequest(index, offset, length)
    if (problem !== undefined) {
      this.destroy(new SiError('ERR_PEER_PROTOCOL', `peer requested an invalid block (piece ${index}, offset ${offset}, length ${length}): ${problem}`))
      return
    }
    // Requests voided by a choke of ours stay queued until the pump reaches them: not the peer's fault.
    const maxQueued = this.config.maxQueuedRequests
    if (this.uploads.length >= maxQueued) this.dropVoid()
    if (this.uploads.length >= maxQueued) {
      this.destroy(new SiError('ERR_PEER_PROTOCOL', `peer has more than ${maxQueued} requests queued`))
      return
    }
    this.uploads.push({ index, offset, length, chokeCount: this.wire.chokeCount, cancelled: false })
    this.markUseful()
    this.pump()
  }

  private cancelUpload (index: number, offset: number, length: number): void {
    const matches = (r: QueuedRequest): boolean => r.index === index && r.offset === offset && r.length === length
    const at = this.uploads.findIndex(matches)
    if (at >= 0) this.uploads.splice(at, 1)
    for (const r of this.reading) if (matches(r)) r.cancelled = true
  }

  private dropVoid (): void {
    let kept = 0
    for (const req of this.uploads) if (!this.isVoid(req)) this.uploads[kept++] = req
    this.uploads.length = kept
  }

  private isVoid (req: QueuedRequest): boolean {
    return req.cancelled || req.chokeCount !== this.wire.chokeCount
  }

  /** Answers queued requests while the socket keeps up. */
  private pump (): void {
    const readBlock = this.readBlock
    if (readBlock === undefined || this.throttleTimer !== undefined) return
    while (!this.closed && this.uploads.length > 0 && this.socket.writableLength + this.readingBytes < this.config.uploadHighWaterBytes) {
      const req = this.uploads[0]
      if (this.isVoid(req)) { this.uploads.shift(); continue }
      if (this.uploadLimit !== undefined && !this.uploadLimit.tryTake(req.length)) {
        this.throttleTimer = setTimeout(() => { this.throttleTimer = undefined; this.pump() }, this.uploadLimit.msUntil(req.length))
        return
      }
      this.uploads.shift()
      this.reading.add(req)
      this.readingBytes += req.length
      readBlock(req.index, req.offset, req.length).then(block => {
        this.reading.delete(req)
        this.readingBytes -= req.length
        if (!this.closed && !this.isVoid(req)) this.wire.piece(req.index, req.offset, block)
        this.pump()
      }, err => {
        this.reading.delete(req)
        this.readingBytes -= req.length
        this.destroy(new SiError('ERR_STAGING', `cannot read block for peer: ${describeError(err)}`, { cause: err }))
      })
    }
  }
}
