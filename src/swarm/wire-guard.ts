// Stands between a peer's socket and bittorrent-protocol's Wire, which buffers whatever
// length a peer announces (a length >= 2^31 even reads as a keep-alive) and parses short
// messages out of bounds. The guard follows the framing itself and cuts the connection
// at the first message whose length does not fit its type, before the Wire sees it.
import { Transform, type TransformCallback } from 'node:stream'
import { SiError } from '../errors.ts'

const HANDSHAKE_LENGTH = 68
/** Largest block a peer may send or ask for; 16 KiB is what everyone uses, 128 KiB the cap most clients accept. */
export const MAX_BLOCK_LENGTH = 128 * 1024
const MAX_EXTENDED_LENGTH = 1024 * 1024
const MAX_UNKNOWN_LENGTH = 64 * 1024
const DEFAULT_MAX_BITFIELD_BYTES = 1024 * 1024

const FIXED_LENGTHS: Record<number, number> = {
  0: 1, // choke
  1: 1, // unchoke
  2: 1, // interested
  3: 1, // not interested
  4: 5, // have
  6: 13, // request
  8: 13, // cancel
  9: 3, // port
  13: 5, // suggest
  14: 1, // have all
  15: 1, // have none
  16: 13, // reject
  17: 5 // allowed fast
}

export class WireGuard extends Transform {
  private handshakeLeft = HANDSHAKE_LENGTH
  private header = Buffer.alloc(5)
  private headerFill = 0
  private bodyLeft = 0
  private bitfieldBytes = DEFAULT_MAX_BITFIELD_BYTES

  /** Once the torrent is known, a bitfield must have exactly its size. */
  setPieceCount (pieceCount: number): void {
    this.bitfieldBytes = Math.ceil(pieceCount / 8)
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const error = this.inspect(chunk)
    if (error !== undefined) return done(error)
    done(null, chunk)
  }

  private inspect (chunk: Buffer): SiError | undefined {
    let pos = 0
    if (this.handshakeLeft > 0) {
      const take = Math.min(this.handshakeLeft, chunk.length)
      if (this.handshakeLeft === HANDSHAKE_LENGTH && chunk[0] !== 19) {
        return new SiError('ERR_PEER_PROTOCOL', 'peer does not speak the BitTorrent protocol')
      }
      this.handshakeLeft -= take
      pos = take
    }
    while (pos < chunk.length) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, chunk.length - pos)
        this.bodyLeft -= take
        pos += take
        continue
      }
      // Collect the 4-byte length and the id byte, which may straddle chunks.
      while (this.headerFill < 4 && pos < chunk.length) this.header[this.headerFill++] = chunk[pos++]
      if (this.headerFill < 4) break
      const length = this.header.readUInt32BE(0)
      if (length === 0) { this.headerFill = 0; continue }
      if (this.headerFill === 4) {
        if (pos >= chunk.length) break
        this.header[this.headerFill++] = chunk[pos++]
      }
      const id = this.header[4]
      const problem = this.checkLength(id, length)
      if (problem !== undefined) return new SiError('ERR_PEER_PROTOCOL', `peer sent message ${id} of length ${length}: ${problem}`)
      this.bodyLeft = length - 1
      this.headerFill = 0
    }
    return undefined
  }

  private checkLength (id: number, length: number): string | undefined {
    const fixed = FIXED_LENGTHS[id]
    if (fixed !== undefined) return length === fixed ? undefined : `expected ${fixed}`
    switch (id) {
      case 5: return length === 1 + this.bitfieldBytes || (this.bitfieldBytes === DEFAULT_MAX_BITFIELD_BYTES && length <= 1 + this.bitfieldBytes) ? undefined : `expected ${1 + this.bitfieldBytes}`
      case 7: return length > 9 && length <= 9 + MAX_BLOCK_LENGTH ? undefined : `blocks are 1..${MAX_BLOCK_LENGTH} bytes`
      case 20: return length >= 2 && length <= MAX_EXTENDED_LENGTH ? undefined : `extended messages are 2..${MAX_EXTENDED_LENGTH} bytes`
      default: return length <= MAX_UNKNOWN_LENGTH ? undefined : `unknown messages are at most ${MAX_UNKNOWN_LENGTH} bytes`
    }
  }
}
