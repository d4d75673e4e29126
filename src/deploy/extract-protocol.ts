// What the extractor's main thread (which reads and checks the archive) sends to the
// extraction worker (which does every file-system call, synchronously, in order), and
// what comes back. Entries travel in batches: one message carries many entries and
// their contents, so a file costs a fraction of a round trip instead of one per syscall.
//
// Paths are "byte strings" (latin1: one char per byte), relative to the target, already
// checked to hold no "..", no NUL and no leading "/". Binary values travel as exact-size
// Uint8Arrays: a Buffer view would drag its whole backing store through the clone.
import type { SiErrorCode } from '../errors.ts'

export interface EntryAttrs { mode: number; uid: number; gid: number; atimeNs: bigint; mtimeNs: bigint }

export interface EntryXattrs {
  xattrs?: Array<[name: string, value: Uint8Array]>
  aclAccess?: string
  aclDefault?: string
}

interface Named {
  /** Relative path (latin1 byte string); "" is the target root. */
  rel: string
  /** The entry as messages name it. */
  name: string
}

export type ExtractOp =
  | Named & { kind: 'directory'; attrs: EntryAttrs; xattrs?: EntryXattrs }
  /** Creates a regular file; its content follows as `data` ops, then `end-file`. */
  | Named & { kind: 'file'; attrs: EntryAttrs; xattrs?: EntryXattrs; size: number; sparse: boolean }
  /** `length` bytes at `at` in the batch's data go to offset `offset` of the open file. */
  | { kind: 'data'; offset: number; at: number; length: number }
  | { kind: 'end-file' }
  | Named & { kind: 'symlink'; attrs: EntryAttrs; xattrs?: EntryXattrs; target: string }
  /** `target` is a relative path inside the target, checked like `rel`. */
  | Named & { kind: 'link'; target: string }
  | Named & { kind: 'fifo' | 'character-device' | 'block-device'; attrs: EntryAttrs; xattrs?: EntryXattrs; major: number; minor: number }

export interface WorkerSetup {
  /** The target's real path, as a latin1 byte string. */
  root: string
  /** TARGET/.si-incomplete: private scratch space (device nodes are made there). */
  marker: string
  /** Exact times that may wait for a run of the time fixer (extract-jail.ts TIME_FIXES_PER_RUN). */
  timeFixesPerRun: number
}

/**
 * One extraction is one session: a worker outlives it and serves the next (starting a
 * worker costs far more than a small archive's extraction). Every message names its
 * session; whatever arrives for a session that ended is ignored.
 */
export type ToWorker = { session: number } & (
  | { type: 'start'; setup: WorkerSetup }
  | { type: 'batch'; seq: number; ops: ExtractOp[]; data: ArrayBuffer }
  /** Every entry was sent: xattrs, directory attributes, exact times. */
  | { type: 'finish'; skipRoot: boolean }
  /** Stop: close what is open, drop what is queued, and say so. */
  | { type: 'abort' }
)

export interface WorkerFailure { code: SiErrorCode; message: string }

export type FromWorker = { session: number } & (
  /** The batch's buffer comes back for the next batch. */
  | { type: 'batch-done'; seq: number; data: ArrayBuffer }
  /** `mostTimesWaiting`: the most exact times that waited after a batch (bounded by the setup's timeFixesPerRun). */
  | { type: 'finished'; mostTimesWaiting: number }
  | { type: 'aborted' }
  | { type: 'failed'; failure: WorkerFailure }
)
