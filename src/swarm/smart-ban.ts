// Finds who lied when a piece assembled from several peers fails its hash check. The
// piece's blocks are fingerprinted with their senders; once the piece passes (fetched
// again, from one peer), every earlier sender whose block differs from the good data is
// guilty. Honest peers that merely shared a piece with a liar are never blamed.
import { createHash } from 'node:crypto'
import { BLOCK_SIZE } from './piece-picker.ts'

interface BlockRecord { block: number; peer: string; digest: Buffer }

export class SmartBan {
  private readonly failures = new Map<number, BlockRecord[]>()

  recordFailure (index: number, data: Buffer, senders: Array<string | undefined>): void {
    const records = this.failures.get(index) ?? []
    senders.forEach((peer, block) => {
      if (peer !== undefined) records.push({ block, peer, digest: blockDigest(data, block) })
    })
    this.failures.set(index, records)
  }

  /** The peers that sent blocks differing from the verified piece; forgets the piece. */
  guilty (index: number, verified: Buffer): string[] {
    const records = this.failures.get(index)
    this.failures.delete(index)
    if (records === undefined) return []
    const liars = new Set<string>()
    for (const r of records) {
      if (!blockDigest(verified, r.block).equals(r.digest)) liars.add(r.peer)
    }
    return [...liars]
  }
}

function blockDigest (data: Buffer, block: number): Buffer {
  return createHash('sha1').update(data.subarray(block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE)).digest()
}
