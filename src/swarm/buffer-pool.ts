// Buffers of one size, taken and given back, so that a stream of same-sized buffers
// (pieces, reads of the staging file) reuses a few instead of leaving each to the
// garbage collector. V8 frees a dead buffer's memory only when it collects the object
// that held it; a buffer that lived through a scavenge or two waits for a full
// collection, which starts only once 64 MiB more of such memory has been made: on a
// 6.5 GB image that was 90-120 MiB of dead buffers at the agent's peak
// (docs/ARCHITECTURE.md, Memory).
//
// Ownership: whoever took a buffer gives it back (or any view of it), once, and only when
// nothing holds it any more: no write, hash or message still using it. A buffer never
// given back is simply collected: giving back saves memory, it is never a duty. What was
// not taken from this pool is refused, so a consumer may give back whatever it was handed.

export class BufferPool {
  private readonly free: ArrayBuffer[] = []
  /** Taken and not given back. */
  private readonly out = new WeakSet<ArrayBuffer>()
  /** Buffers made so far, for tests and figures: with every one given back, bounded by the most in use at once. */
  made = 0

  /**
   * @param size bytes of every buffer
   * @param maxFree free buffers kept at most; more given back are left to the collector
   */
  constructor (readonly size: number, private readonly maxFree: number) {}

  /** A buffer of `size` bytes whose content is undefined. */
  take (): Buffer {
    let memory = this.free.pop()
    if (memory === undefined) {
      this.made++
      // Its own allocation, never a slice of Node's shared slab: it is reused whole.
      memory = Buffer.allocUnsafeSlow(this.size).buffer as ArrayBuffer
    }
    this.out.add(memory)
    return Buffer.from(memory, 0, this.size)
  }

  /** A buffer taken from this pool, or a view of one, that nobody uses any more; others are ignored. */
  give (view: Uint8Array): void {
    const memory = view.buffer as ArrayBuffer
    if (!this.out.delete(memory)) return
    if (this.free.length < this.maxFree) this.free.push(memory)
  }

  /** Drops the free buffers (at close). */
  clear (): void {
    this.free.length = 0
  }
}
