// The main thread's side of the extraction worker: gathers entries and their contents
// into batches and hands them over, a few batches in flight at most (so memory stays
// bounded whatever the image), and reports each entry once the worker has written it.
// A batch goes out when it is full, or, when the worker has nothing to do, as soon as
// this thread would wait for input: a worker never waits for a batch to fill while the
// download trickles in, and a burst of small files is still one message. Batch buffers
// move to the worker and back without a copy, and are reused: allocating them anew left
// the worker's garbage (which it rarely collects: it allocates little) to hundreds of MiB.
// Workers outlive an extraction: an idle one serves the next (starting one costs more
// than extracting a small archive), and does not keep the process alive.
import { Worker } from 'node:worker_threads'
import { SiError } from '../errors.ts'
import type { ExtractOp, FromWorker, ToWorker, WorkerSetup } from './extract-protocol.ts'

/** Content bytes in one batch (copied once, then moved to the worker without a copy). */
export const BATCH_BYTES = 1024 * 1024
/** Entries' operations in one batch. */
export const BATCH_OPS = 2048
/** Batches handed over and not yet written: bounds memory to about this many BATCH_BYTES. */
export const BATCHES_IN_FLIGHT = 8
/** A worker asked to stop answers once its current batch is done; never wait longer. */
const ABORT_WAIT_MS = 10_000
/** Idle workers kept for the next extractions (more run at once when needed). */
const MAX_IDLE_WORKERS = 2

// build.mjs bundles extract-worker.ts and defines this as its code: the single
// executable has no file to start a worker from. Runs from source load the module itself.
declare const SI_EXTRACT_WORKER_CODE: string | undefined

function newArena (): Uint8Array {
  return new Uint8Array(new ArrayBuffer(BATCH_BYTES))
}

const idleWorkers: Worker[] = []
let nextSession = 0

function startWorker (): Worker {
  const worker = typeof SI_EXTRACT_WORKER_CODE === 'string'
    ? new Worker(SI_EXTRACT_WORKER_CODE, { eval: true })
    : new Worker(new URL('./extract-worker.ts', import.meta.url))
  // One that dies while idle is simply not reused.
  worker.once('exit', () => {
    const i = idleWorkers.indexOf(worker)
    if (i >= 0) idleWorkers.splice(i, 1)
  })
  worker.on('error', () => {}) // reported to the session using it, if any
  return worker
}

function acquireWorker (): Worker {
  const worker = idleWorkers.pop() ?? startWorker()
  worker.ref()
  return worker
}

function releaseWorker (worker: Worker): void {
  if (idleWorkers.length < MAX_IDLE_WORKERS) {
    worker.unref()
    idleWorkers.push(worker)
  } else void worker.terminate()
}

export class ExtractFeed {
  private readonly session = nextSession++
  private ops: ExtractOp[] = []
  private names: string[] = []
  private arena = newArena()
  /** Batch buffers back from the worker. */
  private readonly spare: Uint8Array[] = []
  private used = 0
  private seq = 0
  private readonly inFlight = new Map<number, string[]>()
  private failure: SiError | undefined
  private finished = false
  /** Reported by the worker when it has finished: see FromWorker. */
  mostTimesWaiting = 0
  private aborted = false
  /** The worker is no longer this feed's (released or terminated). */
  private done = false
  private idleSend: NodeJS.Immediate | undefined
  /** Woken at every answer of the worker (or its failure). */
  private wake: (() => void) | undefined
  private readonly onMessageBound = (m: FromWorker): void => { if (m.session === this.session) this.onMessage(m) }
  private readonly onErrorBound = (err: Error): void => this.fail(new SiError('ERR_ARCHIVE', `extraction worker failed: ${err.message}`, { cause: err }))
  private readonly onExitBound = (): void => {
    this.done = true
    if (!this.finished) this.fail(new SiError('ERR_ARCHIVE', 'extraction worker exited unexpectedly'))
  }

  /** The worker is taken at the first message: an archive refused before its first entry costs none. */
  private worker: Worker | undefined

  constructor (private readonly setup: WorkerSetup, private readonly onEntry: (name: string) => void) {}

  private post (m: ToWorker, transfer?: ArrayBuffer[]): void {
    if (this.worker === undefined) {
      this.worker = acquireWorker()
      this.worker.on('message', this.onMessageBound)
      this.worker.on('error', this.onErrorBound)
      this.worker.on('exit', this.onExitBound)
      this.worker.postMessage({ session: this.session, type: 'start', setup: this.setup } satisfies ToWorker)
    }
    this.worker.postMessage(m, transfer)
  }

  private onMessage (m: FromWorker): void {
    switch (m.type) {
      case 'batch-done': {
        this.spare.push(new Uint8Array(m.data))
        for (const name of this.inFlight.get(m.seq) ?? []) this.onEntry(name)
        this.inFlight.delete(m.seq)
        if (this.inFlight.size === 0 && this.ops.length > 0) this.send()
        break
      }
      case 'failed': this.fail(new SiError(m.failure.code, m.failure.message)); break
      case 'finished': this.finished = true; this.mostTimesWaiting = m.mostTimesWaiting; break
      case 'aborted': this.aborted = true; break
    }
    this.notify()
  }

  private fail (err: SiError): void {
    this.failure ??= err
    this.notify()
  }

  private notify (): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  private throwIfFailed (): void {
    if (this.failure !== undefined) throw this.failure
  }

  /** Until the worker says something (or fails). */
  private async answer (): Promise<void> {
    this.throwIfFailed()
    await new Promise<void>(resolve => { this.wake = resolve })
    this.throwIfFailed()
  }

  private send (): void {
    const seq = this.seq++
    const data = this.arena.buffer as ArrayBuffer
    this.arena = this.spare.pop() ?? newArena()
    this.post({ session: this.session, type: 'batch', seq, ops: this.ops, data }, [data])
    this.inFlight.set(seq, this.names)
    this.ops = []
    this.names = []
    this.used = 0
  }

  /** Hands the batch over, then waits while too many are in flight. */
  private async flush (): Promise<void> {
    if (this.ops.length > 0) this.send()
    while (this.inFlight.size >= BATCHES_IN_FLIGHT) await this.answer()
  }

  /** One operation; `done` names an entry that is complete once it is applied. */
  async add (op: ExtractOp, done?: string): Promise<void> {
    this.throwIfFailed()
    this.ops.push(op)
    if (done !== undefined) this.names.push(done)
    if (this.ops.length >= BATCH_OPS) await this.flush()
    else if (this.inFlight.size === 0) this.sendWhenIdle()
  }

  /**
   * The worker has nothing to do: what is gathered goes out as soon as this thread would
   * wait for input (a setImmediate runs then), not entry by entry, which would make
   * every small file a message of its own.
   */
  private sendWhenIdle (): void {
    if (this.idleSend !== undefined) return
    this.idleSend = setImmediate(() => {
      this.idleSend = undefined
      if (this.ops.length > 0 && this.inFlight.size < BATCHES_IN_FLIGHT && !this.done) this.send()
    })
  }

  /** An entry that needs no operation: reported with the ones before it. */
  skipped (name: string): void {
    if (this.ops.length === 0 && this.inFlight.size === 0) this.onEntry(name)
    else this.names.push(name)
  }

  /** Content for the open file at `offset`, copied into the batch (split when it is full). */
  async data (offset: number, bytes: Uint8Array): Promise<void> {
    for (let done = 0; done < bytes.length;) {
      this.throwIfFailed()
      if (this.used === BATCH_BYTES || this.ops.length >= BATCH_OPS) await this.flush()
      const n = Math.min(bytes.length - done, BATCH_BYTES - this.used)
      this.arena.set(bytes.subarray(done, done + n), this.used)
      this.ops.push({ kind: 'data', offset: offset + done, at: this.used, length: n })
      this.used += n
      done += n
    }
  }

  /** Sends what is left, then the closing steps; resolves once all of it is on disk. */
  async finish (skipRoot: boolean): Promise<void> {
    await this.flush()
    while (this.inFlight.size > 0) await this.answer()
    this.post({ session: this.session, type: 'finish', skipRoot })
    while (!this.finished) await this.answer()
    this.handBack(true)
  }

  /** Stops this extraction: the worker closes what it had open, drops the rest, and is free again. */
  async stop (): Promise<void> {
    if (this.done) return
    if (this.worker !== undefined && !this.finished) {
      this.post({ session: this.session, type: 'abort' })
      let timedOut = false
      const deadline = setTimeout(() => { timedOut = true; this.notify() }, ABORT_WAIT_MS)
      // A failure is no answer to the abort: the worker says when it has stopped.
      while (!this.aborted && !this.done && !timedOut) await new Promise<void>(resolve => { this.wake = resolve })
      clearTimeout(deadline)
    }
    this.handBack(this.aborted || this.finished)
  }

  /** The worker goes back to the idle ones (or away, if it may be in a bad state). */
  private handBack (reusable: boolean): void {
    if (this.done) return
    this.done = true
    clearImmediate(this.idleSend)
    if (this.worker === undefined) return
    this.worker.off('message', this.onMessageBound)
    this.worker.off('error', this.onErrorBound)
    this.worker.off('exit', this.onExitBound)
    if (reusable) releaseWorker(this.worker)
    else void this.worker.terminate()
  }
}
