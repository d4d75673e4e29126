// A digest of a file's content that does not depend on how its zeros are stored: the
// same for a sparse file read from disk (holes read as zeros), for a GNU sparse archive
// member (segments with gaps) and for a dense copy. Hashing skips all-zero blocks, so a
// 9 GiB file of holes costs a read of zeros (fast), not 9 GiB of SHA-256.
import { createHash, type Hash } from 'node:crypto'

export const DIGEST_BLOCK = 4096
const ZERO_BLOCK = Buffer.alloc(DIGEST_BLOCK)

/**
 * Feed (offset, bytes) in increasing offsets with gaps for holes; digest() gives
 * sha256 over each maximal run of non-zero blocks (start index, bytes) plus the size.
 */
export class ContentDigest {
  private readonly hash: Hash = createHash('sha256')
  /** Bytes of the block being assembled (its index is `blockIndex`). */
  private readonly partial = Buffer.alloc(DIGEST_BLOCK)
  private partialLen = 0
  private blockIndex = 0
  private inRun = false
  private position = 0

  update (offset: number, data: Buffer): void {
    if (offset < this.position) throw new Error('ContentDigest: offsets must increase')
    this.skipTo(offset)
    let i = 0
    // Fill the current partial block first.
    if (this.partialLen > 0) {
      const n = Math.min(DIGEST_BLOCK - this.partialLen, data.length)
      data.copy(this.partial, this.partialLen, 0, n)
      this.partialLen += n
      i = n
      if (this.partialLen === DIGEST_BLOCK) this.flushPartial()
    }
    // Whole blocks straight from the input, runs hashed in one call each.
    let runStart = -1
    for (; i + DIGEST_BLOCK <= data.length; i += DIGEST_BLOCK) {
      const block = data.subarray(i, i + DIGEST_BLOCK)
      if (block.equals(ZERO_BLOCK)) {
        if (runStart >= 0) { this.hash.update(data.subarray(runStart, i)); runStart = -1 }
        this.inRun = false
      } else {
        if (!this.inRun) this.startRun()
        if (runStart < 0) runStart = i
      }
      this.blockIndex++
    }
    if (runStart >= 0) this.hash.update(data.subarray(runStart, i))
    if (i < data.length) {
      data.copy(this.partial, 0, i)
      this.partialLen = data.length - i
    }
    this.position = offset + data.length
  }

  private startRun (): void {
    const head = Buffer.alloc(9)
    head[0] = 0x52 // 'R'
    head.writeBigUInt64BE(BigInt(this.blockIndex), 1)
    this.hash.update(head)
    this.inRun = true
  }

  private flushPartial (): void {
    const block = this.partial.subarray(0, this.partialLen)
    if (this.partialLen === DIGEST_BLOCK && block.equals(ZERO_BLOCK)) this.inRun = false
    else if (!block.every(b => b === 0)) {
      if (!this.inRun) this.startRun()
      this.hash.update(block)
    } else this.inRun = false
    this.partial.fill(0)
    this.partialLen = 0
    this.blockIndex++
  }

  /** Moves over a hole: zeros up to `offset`. */
  private skipTo (offset: number): void {
    if (offset === this.position) return
    const posInBlock = this.position % DIGEST_BLOCK
    if (this.partialLen > 0 || posInBlock !== 0) {
      const blockEnd = this.position - posInBlock + DIGEST_BLOCK
      if (offset < blockEnd) {
        this.partialLen = offset % DIGEST_BLOCK // zeros are already there
        this.position = offset
        return
      }
      this.partialLen = DIGEST_BLOCK
      this.flushPartial()
      this.position = blockEnd
    }
    const whole = Math.floor((offset - this.position) / DIGEST_BLOCK)
    if (whole > 0) this.inRun = false
    this.blockIndex += whole
    this.position += whole * DIGEST_BLOCK
    this.partialLen = offset - this.position
    this.position = offset
  }

  digest (size: number): string {
    this.skipTo(size)
    if (this.partialLen > 0) this.flushPartial()
    this.hash.update(`size:${size}`)
    return this.hash.digest('hex')
  }
}
