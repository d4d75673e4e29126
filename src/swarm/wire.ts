// The BitTorrent peer wire over one socket (BEP 3, with BEP 10's extension handshake and
// BEP 11's PEX): both sides' choke and interest, the remote side's pieces, and our
// requests with their answers. Messages are written straight into the socket, corked
// for the rest of the tick so that a burst of haves and requests leaves in one write;
// a block goes out as its 13-byte header and the block itself, never copied together.
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import { SiError } from '../errors.ts'
import { decodeBencode, encodeBencode, isBencodeDict, type BencodeDict } from '../torrent/bencode.ts'
import { swarmConfig, type WireConfig } from './config.ts'
import { PexExchange } from './pex.ts'
import { MESSAGE, WireReader, encodeHandshake, encodeMessageHead, type Handshake } from './wire-reader.ts'

/** Our id for ut_pex messages, as our extended handshake announces it. */
const UT_PEX_LOCAL_ID = 1
const EXTENDED_HANDSHAKE_ID = 0
const KEEP_ALIVE = Buffer.alloc(4)

/** Called once per request: the block, or undefined if it will not come (choke, cancel, close, timeout). */
export type BlockAnswer = (block: Buffer | undefined) => void

interface OutgoingRequest { index: number; offset: number; length: number; answer: BlockAnswer }

/** Which pieces the remote side holds, as its bitfield and haves say. */
export class PeerPieces {
  constructor (readonly buffer: Uint8Array = new Uint8Array(0)) {}

  get (index: number): boolean {
    const byte = index >> 3
    return byte < this.buffer.length && (this.buffer[byte] & (0x80 >> (index & 7))) !== 0
  }

  /** Marks a piece held; false if it was already, or lies outside the bitfield. */
  set (index: number): boolean {
    const byte = index >> 3
    if (byte >= this.buffer.length || this.get(index)) return false
    this.buffer[byte] |= 0x80 >> (index & 7)
    return true
  }
}

export interface PeerWireEvents {
  handshake: [handshake: Handshake]
  'extended-handshake': [dict: BencodeDict]
  choke: []
  unchoke: []
  interested: []
  uninterested: []
  /** a piece the remote side newly holds (or one outside the torrent, for the owner to judge) */
  have: [index: number]
  /** the remote side's bitfield arrived: `peerPieces` holds it */
  bitfield: []
  request: [index: number, offset: number, length: number]
  cancel: [index: number, offset: number, length: number]
  /** block bytes received, asked for or not */
  download: [bytes: number]
  /** block bytes sent */
  upload: [bytes: number]
  /** requests went unanswered for the request timeout */
  timeout: []
}

/** A malformed message makes `feed` throw ERR_PEER_PROTOCOL. */
export class PeerWire extends EventEmitter<PeerWireEvents> {
  amChoking = true
  amInterested = false
  peerChoking = true
  peerInterested = false
  /** counts our chokes, so that an answer read before a choke is not sent after it */
  chokeCount = 0
  peerPieces = new PeerPieces()
  /** the remote peer id, hex, once its handshake is in */
  peerId: string | undefined
  peerExtendedHandshake: BencodeDict = {}
  /** fields of our extended handshake besides `m` (listen port, queue depth, version) */
  readonly extendedHandshake: Record<string, string | number> = {}
  readonly pex: PexExchange
  private readonly reader: WireReader
  private readonly requests: OutgoingRequest[] = []
  private peerHandshake: Handshake | undefined
  private handshakeSent = false
  private extendedHandshakeSent = false
  private peerPexId = 0
  private pieceCount = 0
  private requestTimeoutMs = 0
  private requestTimer: NodeJS.Timeout | undefined
  private lastAnswerAt = 0
  private keepAliveTimer: NodeJS.Timeout | undefined
  private corked = false
  private closed = false
  private readonly config: Readonly<WireConfig>

  constructor (private readonly socket: Socket, config?: Partial<WireConfig>) {
    super()
    this.config = swarmConfig(config)
    this.reader = new WireReader({
      handshake: h => this.onHandshake(h),
      message: (id, body) => this.onMessage(id, body)
    })
    this.pex = new PexExchange(payload => {
      if (this.peerPexId !== 0) this.sendExtended(this.peerPexId, payload)
    }, this.config)
  }

  /**
   * Bytes from the socket; throws ERR_PEER_PROTOCOL at the first thing wrong with them.
   * `transient`: the chunk's memory is read into again once this returns (WireReader.feed).
   */
  feed (chunk: Buffer, transient = false): void {
    if (!this.closed) this.reader.feed(chunk, transient)
  }

  /** Once the torrent is known: bitfields must match it exactly. */
  setPieceCount (pieceCount: number): void {
    this.pieceCount = pieceCount
    this.reader.setPieceCount(pieceCount)
    this.peerPieces = new PeerPieces(new Uint8Array(Math.ceil(pieceCount / 8)))
  }

  /** Requests left unanswered this long (counted from the last answer) end in 'timeout'. */
  setRequestTimeout (ms: number): void {
    this.requestTimeoutMs = ms
  }

  startKeepAlive (): void {
    clearInterval(this.keepAliveTimer)
    this.keepAliveTimer = setInterval(() => this.send(KEEP_ALIVE), this.config.keepAliveIntervalMs)
    this.keepAliveTimer.unref()
  }

  handshake (infoHash: Buffer, peerId: Buffer): void {
    this.send(encodeHandshake(infoHash, peerId))
    this.handshakeSent = true
    this.maybeSendExtendedHandshake()
  }

  bitfield (bits: Uint8Array): void {
    this.sendMessage(MESSAGE.bitfield, [], bits)
  }

  have (index: number): void {
    this.sendMessage(MESSAGE.have, [index])
  }

  choke (): void {
    if (this.amChoking) return
    this.amChoking = true
    this.chokeCount++
    this.sendMessage(MESSAGE.choke, [])
  }

  unchoke (): void {
    if (!this.amChoking) return
    this.amChoking = false
    this.sendMessage(MESSAGE.unchoke, [])
  }

  interested (): void {
    if (this.amInterested) return
    this.amInterested = true
    this.sendMessage(MESSAGE.interested, [])
  }

  uninterested (): void {
    if (!this.amInterested) return
    this.amInterested = false
    this.sendMessage(MESSAGE.notInterested, [])
  }

  request (index: number, offset: number, length: number, answer: BlockAnswer): void {
    if (this.closed || this.peerChoking) { answer(undefined); return }
    if (this.requests.length === 0) this.lastAnswerAt = Date.now()
    this.requests.push({ index, offset, length, answer })
    this.armRequestTimer()
    this.sendMessage(MESSAGE.request, [index, offset, length])
  }

  /** Takes back a request; its answer is called with undefined at once. */
  cancel (index: number, offset: number, length: number): void {
    this.takeRequest(index, offset, length)?.answer(undefined)
    this.sendMessage(MESSAGE.cancel, [index, offset, length])
  }

  piece (index: number, offset: number, block: Uint8Array): void {
    this.sendMessage(MESSAGE.piece, [index, offset], block)
    this.emit('upload', block.length)
  }

  /** Fails what is outstanding and stops the timers; the socket is the owner's to close. */
  close (): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.requestTimer)
    clearInterval(this.keepAliveTimer)
    this.pex.stop()
    this.failRequests()
  }

  private onHandshake (h: Handshake): void {
    this.peerHandshake = h
    this.peerId = h.peerId.toString('hex')
    this.emit('handshake', h)
    this.maybeSendExtendedHandshake()
  }

  private maybeSendExtendedHandshake (): void {
    if (this.extendedHandshakeSent || !this.handshakeSent || this.peerHandshake?.extended !== true) return
    this.extendedHandshakeSent = true
    this.sendExtended(EXTENDED_HANDSHAKE_ID, encodeBencode({ ...this.extendedHandshake, m: { ut_pex: UT_PEX_LOCAL_ID } }))
  }

  private onMessage (id: number, body: Buffer): void {
    switch (id) {
      case MESSAGE.choke:
        this.peerChoking = true
        // Without the fast extension a choke drops every request we had queued there.
        this.failRequests()
        this.emit('choke')
        return
      case MESSAGE.unchoke:
        this.peerChoking = false
        this.emit('unchoke')
        return
      case MESSAGE.interested:
        this.peerInterested = true
        this.emit('interested')
        return
      case MESSAGE.notInterested:
        this.peerInterested = false
        this.emit('uninterested')
        return
      case MESSAGE.have: {
        const index = body.readUInt32BE(0)
        if (index < this.pieceCount && !this.peerPieces.set(index)) return
        this.emit('have', index)
        return
      }
      case MESSAGE.bitfield:
        this.peerPieces = new PeerPieces(Uint8Array.from(body))
        this.emit('bitfield')
        return
      case MESSAGE.request:
        // A request to a peer we choke is void (BEP 3); it will ask again once unchoked.
        if (!this.amChoking) this.emit('request', body.readUInt32BE(0), body.readUInt32BE(4), body.readUInt32BE(8))
        return
      case MESSAGE.piece:
        this.onPiece(body.readUInt32BE(0), body.readUInt32BE(4), body.subarray(8))
        return
      case MESSAGE.cancel:
        this.emit('cancel', body.readUInt32BE(0), body.readUInt32BE(4), body.readUInt32BE(8))
        return
      case MESSAGE.extended:
        this.onExtended(body[0], body.subarray(1))
        return
      case MESSAGE.suggest: case MESSAGE.haveAll: case MESSAGE.haveNone: case MESSAGE.reject: case MESSAGE.allowedFast:
        // BEP 6: these need the fast extension, which we do not offer.
        throw new SiError('ERR_PEER_PROTOCOL', `peer sent fast-extension message ${id}, which was not negotiated`)
      default:
        // port (DHT) and anything newer: not ours to act on.
    }
  }

  private onPiece (index: number, offset: number, block: Buffer): void {
    const request = this.takeRequest(index, offset, block.length)
    this.emit('download', block.length)
    if (request === undefined) return // cancelled, or never asked for
    this.lastAnswerAt = Date.now()
    request.answer(block)
  }

  private onExtended (extId: number, payload: Buffer): void {
    if (extId === EXTENDED_HANDSHAKE_ID) {
      let dict
      try {
        dict = decodeBencode(payload)
      } catch (err) {
        throw new SiError('ERR_PEER_PROTOCOL', `peer sent a bad extended handshake: ${err instanceof Error ? err.message : String(err)}`)
      }
      if (!isBencodeDict(dict)) throw new SiError('ERR_PEER_PROTOCOL', 'peer sent an extended handshake that is not a dictionary')
      this.peerExtendedHandshake = dict
      const m = dict.m
      const pexId = isBencodeDict(m) ? m.ut_pex : undefined
      // BEP 10: a later handshake may change the id, and 0 (or no entry) turns PEX off.
      if (typeof pexId === 'number' && Number.isInteger(pexId) && pexId > 0 && pexId < 256) {
        this.peerPexId = pexId
        this.pex.start()
      } else {
        this.peerPexId = 0
        this.pex.stop()
      }
      this.emit('extended-handshake', dict)
    } else if (extId === UT_PEX_LOCAL_ID) {
      this.pex.receive(payload)
    }
  }

  private takeRequest (index: number, offset: number, length: number): OutgoingRequest | undefined {
    const at = this.requests.findIndex(r => r.index === index && r.offset === offset && r.length === length)
    if (at < 0) return undefined
    return this.requests.splice(at, 1)[0]
  }

  private failRequests (): void {
    for (const request of this.requests.splice(0)) request.answer(undefined)
  }

  private armRequestTimer (): void {
    if (this.requestTimer !== undefined || this.requestTimeoutMs <= 0) return
    this.requestTimer = setTimeout(() => this.checkRequestTimeout(), this.requestTimeoutMs)
    this.requestTimer.unref()
  }

  /** One timer per connection, re-armed for the time left rather than reset on every block. */
  private checkRequestTimeout (): void {
    this.requestTimer = undefined
    if (this.closed || this.requests.length === 0) return
    const idle = Date.now() - this.lastAnswerAt
    if (idle < this.requestTimeoutMs) {
      this.requestTimer = setTimeout(() => this.checkRequestTimeout(), this.requestTimeoutMs - idle)
      this.requestTimer.unref()
      return
    }
    this.requests.shift()?.answer(undefined)
    this.emit('timeout')
  }

  private sendExtended (extId: number, payload: Buffer): void {
    this.sendMessage(MESSAGE.extended, [], Buffer.concat([Buffer.from([extId]), payload]))
  }

  /** <length><id><32-bit fields...><payload>; the payload is written as it is, not copied. */
  private sendMessage (id: number, fields: number[], payload?: Uint8Array): void {
    this.send(encodeMessageHead(id, fields, payload?.length ?? 0))
    if (payload !== undefined) this.send(payload)
  }

  private send (buf: Uint8Array): void {
    if (this.closed || this.socket.destroyed) return
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(() => {
        this.corked = false
        this.socket.uncork()
      })
    }
    this.socket.write(buf)
  }
}
