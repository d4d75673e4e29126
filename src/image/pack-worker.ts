// The pack worker: walks the tree (pack-walk.ts) with synchronous calls and hands the tar
// to the main thread in batches, so reading the tree runs beside what the main thread
// does with the bytes (compressing, hashing, writing). The walk never yields to an event
// loop: when enough batches are in flight it blocks on the shared counter
// (pack-protocol.ts) until the main thread has written one, or the pack is aborted.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads'
import { SiError, isSiError } from '../errors.ts'
import { CONTROL_ABORT, CONTROL_CONSUMED, type FromPackWorker, type PackFailure, type PackSetup } from './pack-protocol.ts'
import { walkTree, type TarSink } from './pack-walk.ts'

/** Longest single wait: an abort also wakes the worker, this only bounds each wait. */
const WAIT_SLICE_MS = 1000

class BatchSink implements TarSink {
  private batch: Buffer
  private used = 0
  private sent = 0

  constructor (private readonly setup: PackSetup, private readonly control: Int32Array, private readonly post: (m: FromPackWorker, transfer: ArrayBuffer[]) => void) {
    this.batch = this.newBatch()
  }

  private newBatch (): Buffer {
    const spare = receiveMessageOnPort(this.setup.spareBatches)?.message as ArrayBuffer | undefined
    if (spare !== undefined && spare.byteLength === this.setup.batchBytes) return Buffer.from(spare)
    // Its own ArrayBuffer, never the shared pool's: it is moved to the main thread.
    return Buffer.allocUnsafeSlow(this.setup.batchBytes)
  }

  get aborted (): boolean {
    return Atomics.load(this.control, CONTROL_ABORT) !== 0
  }

  write (bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length;) {
      const room = this.room()
      const n = Math.min(room.length, bytes.length - done)
      room.set(bytes.subarray(done, done + n))
      this.commit(n)
      done += n
    }
  }

  room (): Buffer {
    if (this.used === this.batch.length) this.flush()
    return this.batch.subarray(this.used)
  }

  commit (n: number): void {
    this.used += n
  }

  /** Sends the current batch, once fewer than batchesInFlight wait to be written. */
  flush (): void {
    if (this.used === 0) return
    for (;;) {
      if (this.aborted) throw new SiError('ERR_ABORTED', 'packing aborted')
      const consumed = Atomics.load(this.control, CONTROL_CONSUMED)
      if (this.sent - consumed < this.setup.batchesInFlight) break
      Atomics.wait(this.control, CONTROL_CONSUMED, consumed, WAIT_SLICE_MS)
    }
    const data = this.batch.buffer as ArrayBuffer
    this.post({ type: 'batch', data, length: this.used }, [data])
    this.sent++
    this.batch = this.newBatch()
    this.used = 0
  }
}

function failureOf (err: unknown, root: string): PackFailure {
  if (isSiError(err)) return { code: err.code, message: err.message }
  return { code: 'ERR_ARCHIVE', message: `packing ${root} failed: ${(err as Error)?.message ?? String(err)}` }
}

async function run (): Promise<void> {
  const port = parentPort
  if (port === null) return
  const setup = workerData as PackSetup
  const post = (m: FromPackWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer)
  const sink = new BatchSink(setup, new Int32Array(setup.control), post)
  try {
    const result = await walkTree(setup.root, sink, { xattrs: setup.xattrs, aborted: () => sink.aborted })
    sink.flush()
    post({ type: 'done', result })
  } catch (err) {
    post({ type: 'failed', failure: failureOf(err, setup.root) })
  } finally {
    setup.spareBatches.close()
  }
}

void run()
