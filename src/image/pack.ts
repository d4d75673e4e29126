// Packs a directory tree into a tar archive (pack-walk.ts says what the archive holds).
// The walk runs in a worker thread of its own (pack-worker.ts), with synchronous calls;
// this side receives the tar in batches and writes them to the output, so reading the
// tree, and compressing, hashing and writing its archive, run at the same time on
// different cores instead of one after the other on the event loop.
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { lstat, realpath, unlink } from 'node:fs/promises'
import type { Writable } from 'node:stream'
import { MessageChannel, Worker } from 'node:worker_threads'
import { SiError } from '../errors.ts'
import { CONTROL_ABORT, CONTROL_CONSUMED, CONTROL_SLOTS, type FromPackWorker, type PackSetup } from './pack-protocol.ts'
import type { PackResult } from './pack-walk.ts'

export type { PackResult } from './pack-walk.ts'

/** Tar bytes per batch: a compressor's or a file write's worth, and a few are in flight. */
const BATCH_BYTES = 1024 * 1024
/**
 * Batches the worker may be ahead of the output by: bounds memory to 16 MiB, and rides
 * out the moments the main thread is not running on a busy two-core machine (root-like
 * tree, alternating: 1.88-2.43 s with 16 against 2.03-2.38 s with 4).
 */
const BATCHES_IN_FLIGHT = 16
/** After an abort the worker puts back the atimes it changed, then says so; never wait longer. */
const WORKER_STOP_WAIT_MS = 30_000

// build.mjs bundles pack-worker.ts and defines this as its code: the single executable
// has no file to start a worker from. Runs from source load the module itself.
declare const SI_PACK_WORKER_CODE: string | undefined

export interface PackOptions {
  onProgress?(bytes: number): void
  signal?: AbortSignal
  /** Read xattrs and ACLs with getfattr (default true; needs the `attr` package). */
  xattrs?: boolean
  /**
   * The output is done with a chunk once its write callback has run (a file, a
   * compressor; not a PassThrough, whose reader gets the chunk itself): its buffer is
   * then filled again instead of a new one being allocated.
   */
  outputReleasesChunks?: boolean
}

function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new SiError('ERR_ABORTED', 'packing aborted')
}

function startWorker (setup: PackSetup): Worker {
  const options = { workerData: setup, transferList: [setup.spareBatches] }
  return typeof SI_PACK_WORKER_CODE === 'string'
    ? new Worker(SI_PACK_WORKER_CODE, { eval: true, ...options })
    : new Worker(new URL('./pack-worker.ts', import.meta.url), options)
}

/**
 * Runs the worker on `root`, writing its batches to `output` in order; resolves once
 * `output` has taken in the last one (its write callback ran; not ended). The first failure stops the worker, which
 * still puts back the atimes it changed before this settles.
 */
function pump (root: string, output: Writable, opts: PackOptions): Promise<PackResult> {
  const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * Int32Array.BYTES_PER_ELEMENT))
  const spare = new MessageChannel()
  const worker = startWorker({
    root,
    xattrs: opts.xattrs !== false,
    control: control.buffer as SharedArrayBuffer,
    batchBytes: BATCH_BYTES,
    batchesInFlight: BATCHES_IN_FLIGHT,
    spareBatches: spare.port2
  })
  return new Promise<PackResult>((resolve, reject) => {
    let bytes = 0
    let handedOver = 0
    let written = 0
    /** The worker's result, held until the output has taken in every batch. */
    let finished: PackResult | undefined
    let settled = false
    /** Why this side stopped the pack: reported instead of the worker's ERR_ABORTED. */
    let stopReason: unknown
    let stopTimer: NodeJS.Timeout | undefined
    const consumed = (data?: ArrayBuffer): void => {
      if (data !== undefined) written++
      if (finished !== undefined && written === handedOver) settle(undefined, finished)
      if (data !== undefined && opts.outputReleasesChunks === true && !settled) spare.port1.postMessage(data, [data])
      Atomics.add(control, CONTROL_CONSUMED, 1)
      Atomics.notify(control, CONTROL_CONSUMED)
    }
    const settle = (err: unknown, result?: PackResult): void => {
      if (settled) return
      settled = true
      clearTimeout(stopTimer)
      opts.signal?.removeEventListener('abort', onAbort)
      output.off('error', onOutputError)
      output.off('close', onOutputClose)
      worker.removeAllListeners('message')
      spare.port1.close()
      void worker.terminate()
      if (stopReason !== undefined) reject(stopReason)
      else if (err !== undefined) reject(err)
      else resolve(result!)
    }
    const stop = (reason: unknown): void => {
      if (stopReason !== undefined || settled) return
      stopReason = reason
      Atomics.store(control, CONTROL_ABORT, 1)
      Atomics.notify(control, CONTROL_CONSUMED)
      stopTimer = setTimeout(() => settle(undefined), WORKER_STOP_WAIT_MS)
    }
    const onAbort = (): void => stop(new SiError('ERR_ABORTED', 'packing aborted'))
    const onOutputError = (err: unknown): void => stop(err)
    const onOutputClose = (): void => stop(new SiError('ERR_ARCHIVE', 'output closed while writing the archive'))
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    output.on('error', onOutputError)
    output.on('close', onOutputClose)
    worker.on('message', (m: FromPackWorker) => {
      switch (m.type) {
        case 'batch':
          if (stopReason !== undefined) { consumed(); return }
          bytes += m.length
          // The batch is this thread's now: handed over as is, counted once written.
          handedOver++
          output.write(Buffer.from(m.data, 0, m.length), err => { if (err == null) consumed(m.data) })
          try {
            opts.onProgress?.(bytes)
          } catch (err) {
            stop(err)
          }
          break
        // Settled once the output has taken in every batch, so it is ended with nothing
        // left to take in: a compressor then ends its stream the same way whatever the
        // timing (zlib gives its last chunk the end flag only if end() came before it).
        case 'done':
          finished = m.result
          if (stopReason !== undefined || written === handedOver) settle(undefined, finished)
          break
        case 'failed': settle(new SiError(m.failure.code, m.failure.message)); break
      }
    })
    worker.on('error', err => settle(new SiError('ERR_ARCHIVE', `pack worker failed: ${err.message}`, { cause: err })))
    // Once done, the worker exits while the output may still be taking in its last batches.
    worker.on('exit', () => { if (finished === undefined) settle(new SiError('ERR_ARCHIVE', 'pack worker exited before it finished')) })
  })
}

async function sourceDir (srcDir: string): Promise<string> {
  try {
    const root = await realpath(srcDir)
    if ((await lstat(root)).isDirectory()) return root
  } catch {
    // Reported below with the path the caller gave.
  }
  throw new SiError('ERR_SOURCE_NOT_FOUND', `${srcDir} is not a directory`)
}

/** Writes srcDir as a tar archive to `out` (a stream, ended on success, or a file path). */
export async function packDirectory (srcDir: string, out: Writable | string, opts: PackOptions = {}): Promise<PackResult> {
  const root = await sourceDir(srcDir)
  throwIfAborted(opts.signal)
  const output = typeof out === 'string' ? createWriteStream(out) : out
  try {
    const result = await pump(root, output, opts)
    output.end()
    await once(output, typeof out === 'string' ? 'close' : 'finish')
    return result
  } catch (err) {
    output.on('error', () => {})
    if (typeof out === 'string') {
      output.destroy()
      if (!output.closed) await new Promise<void>(resolve => output.once('close', () => resolve()))
      await unlink(out).catch(() => {})
    } else {
      output.destroy(err as Error)
    }
    if (opts.signal?.aborted === true) throw new SiError('ERR_ABORTED', 'packing aborted')
    if (err instanceof SiError) throw err
    throw new SiError('ERR_ARCHIVE', `packing ${srcDir} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  }
}
