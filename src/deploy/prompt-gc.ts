// Collects garbage as soon as a thread has made a set amount of it, instead of when V8
// would. An install streams gigabytes through short-lived buffers (socket reads, block
// slices, 4 MiB pieces, 1 MiB extraction chunks, batch messages): most outlive a
// scavenge or two, land in old space, and V8 frees them only at a full collection,
// which it starts once external memory has grown by 64 MiB since the last one. Measured
// on a 6.5 GB /usr install, that left 90-120 MiB of dead buffers in the agent's RSS.
// Collecting every PROMPT_GC_SLACK_BYTES of growth keeps what is dead small, whatever the
// image's size, for a few milliseconds per collection (the live heap is small).
import { getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type CollectGarbage = () => void

let collectGarbage: CollectGarbage | undefined | null = null

/**
 * V8's gc(), made available at run time (a new context gets it once the flag is set),
 * or undefined where the runtime refuses: then V8 alone decides, as before.
 */
function garbageCollector (): CollectGarbage | undefined {
  if (collectGarbage !== null) return collectGarbage
  const exposed = (globalThis as { gc?: CollectGarbage }).gc
  if (typeof exposed === 'function') return (collectGarbage = exposed)
  try {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as unknown
    collectGarbage = typeof gc === 'function' ? gc as CollectGarbage : undefined
  } catch {
    collectGarbage = undefined
  }
  return collectGarbage
}

/** What this thread's heap holds, live or dead: JS objects and the buffers they own. */
export function heldBytes (): number {
  const s = getHeapStatistics()
  return s.used_heap_size + s.external_memory
}

export class PromptCollector {
  private readonly collect = garbageCollector()
  /** What was held after the last collection (measured at the next check: buffers are freed just after it). */
  private floor: number | undefined
  /** Full collections run so far. */
  collections = 0

  constructor (private readonly slackBytes: number) {}

  /** Whether collections can be run here (else check() does nothing). */
  get available (): boolean { return this.collect !== undefined }

  /** Cheap: call it at the pace of the work (per chunk, per batch); collects when the slack is used up. */
  check (): void {
    if (this.collect === undefined) return
    const held = heldBytes()
    if (this.floor === undefined || held < this.floor) {
      this.floor = held
      return
    }
    if (held - this.floor < this.slackBytes) return
    this.collect()
    this.collections++
    this.floor = undefined
  }
}
