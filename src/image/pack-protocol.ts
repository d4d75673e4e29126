// What the packer's main thread and its worker (pack-worker.ts) tell each other. The
// worker walks the tree and sends the tar in batches whose buffers move without a copy;
// the main thread counts the batches it has written in a shared word, which the worker
// waits on (Atomics.wait) when too many are in flight, so memory stays bounded and the
// walk itself stays synchronous. Abort is a second shared word. Written batches may come
// back on a port of their own, which the worker reads without waiting
// (receiveMessageOnPort): a reused buffer costs no allocation and no page faults.
import type { MessagePort } from 'node:worker_threads'
import type { SiErrorCode } from '../errors.ts'
import type { PackResult } from './pack-walk.ts'

/** Int32 slots of the shared control buffer. */
export const CONTROL_CONSUMED = 0
export const CONTROL_ABORT = 1
export const CONTROL_SLOTS = 2

export interface PackSetup {
  /** The source tree's real path. */
  root: string
  xattrs: boolean
  /** CONTROL_SLOTS Int32 words. */
  control: SharedArrayBuffer
  batchBytes: number
  batchesInFlight: number
  /** Batches written, as ArrayBuffers, for the worker to fill again. */
  spareBatches: MessagePort
}

export interface PackFailure { code: SiErrorCode; message: string }

export type FromPackWorker =
  /** `length` bytes of tar at the start of `data`, which is the receiver's now. */
  | { type: 'batch'; data: ArrayBuffer; length: number }
  | { type: 'done'; result: PackResult }
  | { type: 'failed'; failure: PackFailure }
