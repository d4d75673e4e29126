// Cuts a peer's byte stream into the handshake and whole messages, checking every
// announced length against its message type before buffering a byte of the body. A
// message arriving in many TCP segments is joined once, when its last byte is in: the
// segments of a 16 KiB block are held as a list, not copied again at every arrival.
// A socket that reads into one reused buffer (`feed(chunk, true)`) is served without a
// buffer per read: what is left of an incomplete message is copied into the reader's own
// carry buffer, other messages than pieces are copied out, and a piece body is a view
// valid during its handler call only (it is copied into the piece being assembled).
import { SiError } from '../errors.ts'

export const HANDSHAKE_LENGTH = 68
const PROTOCOL_NAME = 'BitTorrent protocol'
/** Largest block a peer may send or ask for; 16 KiB is what everyone uses, 128 KiB the cap most clients accept. */
export const MAX_BLOCK_LENGTH = 128 * 1024
const MAX_EXTENDED_LENGTH = 1024 * 1024
const MAX_UNKNOWN_LENGTH = 64 * 1024
/** Before the torrent is known a bitfield may be this large. */
const DEFAULT_MAX_BITFIELD_BYTES = 1024 * 1024
const LENGTH_PREFIX = 4
/** A carry buffer grown past this (a large bitfield or extended message) is let go once it is no longer needed. */
const CARRY_KEEP_BYTES = 256 * 1024
/** id, index and offset before a block. */
const PIECE_HEAD = 9
/** The block size every client uses: the carry and piece-join buffers start at one such message. */
const USUAL_BLOCK_LENGTH = 16 * 1024

export const MESSAGE = {
  choke: 0,
  unchoke: 1,
  interested: 2,
  notInterested: 3,
  have: 4,
  bitfield: 5,
  request: 6,
  piece: 7,
  cancel: 8,
  port: 9,
  suggest: 13,
  haveAll: 14,
  haveNone: 15,
  reject: 16,
  allowedFast: 17,
  extended: 20
} as const

/** Body lengths (id byte included) of the messages whose size is fixed. */
const FIXED_LENGTHS: Record<number, number> = {
  [MESSAGE.choke]: 1,
  [MESSAGE.unchoke]: 1,
  [MESSAGE.interested]: 1,
  [MESSAGE.notInterested]: 1,
  [MESSAGE.have]: 5,
  [MESSAGE.request]: 13,
  [MESSAGE.cancel]: 13,
  [MESSAGE.port]: 3,
  [MESSAGE.suggest]: 5,
  [MESSAGE.haveAll]: 1,
  [MESSAGE.haveNone]: 1,
  [MESSAGE.reject]: 13,
  [MESSAGE.allowedFast]: 5
}

export interface Handshake {
  infoHash: Buffer
  peerId: Buffer
  /** BEP 10: the peer speaks the extension protocol */
  extended: boolean
}

export interface WireReaderHandlers {
  handshake (h: Handshake): void
  /** `body` is the message after its id byte. */
  message (id: number, body: Buffer): void
}

export class WireReader {
  private readonly chunks: Buffer[] = []
  private buffered = 0
  private handshakeDone = false
  /** length of the message being read, id byte included; 0 while its prefix is read */
  private messageLength = 0
  private idChecked = false
  private bitfieldBytes = DEFAULT_MAX_BITFIELD_BYTES
  /** The chunk being fed is read into again once `feed` returns. */
  private transient = false
  /** Holds the bytes of an incomplete message between transient chunks. */
  private carry: Buffer | undefined
  /** Joins a piece message that spans chunks; its body is used during the handler call only. */
  private pieceJoin: Buffer | undefined

  constructor (private readonly handlers: WireReaderHandlers) {}

  /** Once the torrent is known, a bitfield must have exactly its size. */
  setPieceCount (pieceCount: number): void {
    this.bitfieldBytes = Math.ceil(pieceCount / 8)
  }

  /**
   * Takes the next bytes from the socket; throws ERR_PEER_PROTOCOL at the first wrong one.
   * `transient`: the chunk's memory is read into again after this returns, so nothing
   * keeps a view of it.
   */
  feed (chunk: Buffer, transient = false): void {
    if (chunk.length === 0) return
    if (!this.handshakeDone && this.buffered === 0 && chunk[0] !== PROTOCOL_NAME.length) {
      throw new SiError('ERR_PEER_PROTOCOL', 'peer does not speak the BitTorrent protocol')
    }
    this.chunks.push(chunk)
    this.buffered += chunk.length
    this.transient = transient
    try {
      while (this.step()) { /* one unit per step */ }
    } finally {
      if (transient) this.keepLeftover()
    }
  }

  /** Moves what is left of the chunks into the carry buffer, so that no view of a transient chunk remains. */
  private keepLeftover (): void {
    const n = this.buffered
    // A carry grown for one large message is not kept for small ones (the chunks still
    // hold what they need of it).
    if ((this.carry?.length ?? 0) > CARRY_KEEP_BYTES && n <= CARRY_KEEP_BYTES) this.carry = undefined
    if (n === 0) {
      this.chunks.length = 0
      return
    }
    const carry = roomFor(this.carry, n)
    // The first chunk may be a view of the carry itself: copy moves bytes as memmove does.
    let filled = 0
    for (const chunk of this.chunks) filled += chunk.copy(carry, filled)
    this.carry = carry
    this.chunks.length = 0
    this.chunks.push(carry.subarray(0, n))
  }

  /** Reads one handshake, length prefix or message if all its bytes are in. */
  private step (): boolean {
    if (!this.handshakeDone) {
      if (this.buffered < HANDSHAKE_LENGTH) return false
      this.handshakeDone = true
      this.handlers.handshake(parseHandshake(this.take(HANDSHAKE_LENGTH)))
      return true
    }
    if (this.messageLength === 0) {
      if (this.buffered < LENGTH_PREFIX) return false
      const length = this.take(LENGTH_PREFIX).readUInt32BE(0)
      if (length === 0) return true // keep-alive
      this.messageLength = length
      this.idChecked = false
    }
    if (!this.idChecked) {
      if (this.buffered < 1) return false
      const id = this.chunks[0][0]
      const problem = this.checkLength(id, this.messageLength)
      if (problem !== undefined) throw new SiError('ERR_PEER_PROTOCOL', `peer sent message ${id} of length ${this.messageLength}: ${problem}`)
      this.idChecked = true
    }
    if (this.buffered < this.messageLength) return false
    const isPiece = this.chunks[0][0] === MESSAGE.piece
    const message = this.take(this.messageLength, isPiece ? this.pieceJoinBuffer(this.messageLength) : undefined)
    this.messageLength = 0
    // A piece body is used during the call only; anything else may be kept by its handler.
    const body = this.transient && !isPiece ? Buffer.from(message.subarray(1)) : message.subarray(1)
    this.handlers.message(message[0], body)
    return true
  }

  private pieceJoinBuffer (n: number): Buffer {
    this.pieceJoin = roomFor(this.pieceJoin, n)
    return this.pieceJoin
  }

  /** The next `n` buffered bytes, copied (into `join`, when given) only when they span several chunks. */
  private take (n: number, join?: Buffer): Buffer {
    this.buffered -= n
    const first = this.chunks[0]
    if (first.length > n) {
      this.chunks[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    if (first.length === n) {
      this.chunks.shift()
      return first
    }
    const out = join === undefined ? Buffer.allocUnsafe(n) : join.subarray(0, n)
    let filled = 0
    while (filled < n) {
      const chunk = this.chunks[0]
      const used = Math.min(chunk.length, n - filled)
      chunk.copy(out, filled, 0, used)
      filled += used
      if (used === chunk.length) this.chunks.shift()
      else this.chunks[0] = chunk.subarray(used)
    }
    return out
  }

  private checkLength (id: number, length: number): string | undefined {
    const fixed = FIXED_LENGTHS[id]
    if (fixed !== undefined) return length === fixed ? undefined : `expected ${fixed}`
    switch (id) {
      case MESSAGE.bitfield: {
        const exact = this.bitfieldBytes !== DEFAULT_MAX_BITFIELD_BYTES
        return (exact ? length === 1 + this.bitfieldBytes : length <= 1 + this.bitfieldBytes) ? undefined : `expected ${exact ? '' : 'at most '}${1 + this.bitfieldBytes}`
      }
      case MESSAGE.piece: return length > 9 && length <= 9 + MAX_BLOCK_LENGTH ? undefined : `blocks are 1..${MAX_BLOCK_LENGTH} bytes`
      case MESSAGE.extended: return length >= 2 && length <= MAX_EXTENDED_LENGTH ? undefined : `extended messages are 2..${MAX_EXTENDED_LENGTH} bytes`
      default: return length <= MAX_UNKNOWN_LENGTH ? undefined : `unknown messages are at most ${MAX_UNKNOWN_LENGTH} bytes`
    }
  }
}

/** `buf` if it holds `n` bytes, else a new reusable buffer of at least one usual piece message. */
function roomFor (buf: Buffer | undefined, n: number): Buffer {
  return buf !== undefined && buf.length >= n ? buf : Buffer.allocUnsafeSlow(Math.max(n, PIECE_HEAD + USUAL_BLOCK_LENGTH))
}

function parseHandshake (buf: Buffer): Handshake {
  if (buf.toString('latin1', 1, 1 + PROTOCOL_NAME.length) !== PROTOCOL_NAME) {
    throw new SiError('ERR_PEER_PROTOCOL', 'peer does not speak the BitTorrent protocol')
  }
  const reserved = 1 + PROTOCOL_NAME.length
  return {
    extended: (buf[reserved + 5] & 0x10) !== 0,
    infoHash: Buffer.from(buf.subarray(reserved + 8, reserved + 28)),
    peerId: Buffer.from(buf.subarray(reserved + 28, reserved + 48))
  }
}

/** The 68 bytes we open a connection with; we offer the extension protocol only. */
export function encodeHandshake (infoHash: Buffer, peerId: Buffer): Buffer {
  const buf = Buffer.alloc(HANDSHAKE_LENGTH)
  buf[0] = PROTOCOL_NAME.length
  buf.write(PROTOCOL_NAME, 1, 'latin1')
  const reserved = 1 + PROTOCOL_NAME.length
  buf[reserved + 5] |= 0x10
  infoHash.copy(buf, reserved + 8)
  peerId.copy(buf, reserved + 28)
  return buf
}

/**
 * The head of a message, <length><id><32-bit fields...>, for a body of payloadLength bytes
 * that follows it (a block is written after its head as it is, not copied into it).
 */
export function encodeMessageHead (id: number, fields: readonly number[], payloadLength = 0): Buffer {
  const head = Buffer.allocUnsafe(LENGTH_PREFIX + 1 + 4 * fields.length)
  head.writeUInt32BE(head.length - LENGTH_PREFIX + payloadLength, 0)
  head[LENGTH_PREFIX] = id
  for (let i = 0; i < fields.length; i++) head.writeUInt32BE(fields[i], LENGTH_PREFIX + 1 + 4 * i)
  return head
}
