// The extraction worker: applies batches of entries to the target through the
// synchronous jail, in the order they were sent, off the main thread (where the swarm
// runs and must never wait on a disk). It stops at the first failure and reports it
// with a stable code; an ENOSPC or EDQUOT is ERR_NO_SPACE, naming what is left.
import { statfsSync } from 'node:fs'
import { parentPort } from 'node:worker_threads'
import { isSiError } from '../errors.ts'
import { Jail, errno } from './extract-jail.ts'
import type { ExtractOp, FromWorker, ToWorker, WorkerFailure, WorkerSetup } from './extract-protocol.ts'

const MIB = 1024 * 1024

function spaceLeft (root: string): string {
  try {
    const s = statfsSync(Buffer.from(root, 'latin1'))
    return `${Math.floor(s.bavail * s.bsize / MIB)} MiB and ${s.ffree} inodes free`
  } catch { return 'free space unknown' }
}

function failureOf (err: unknown, setup: WorkerSetup, entry: string | undefined): WorkerFailure {
  if (isSiError(err)) return { code: err.code, message: err.message }
  const where = entry !== undefined ? `entry "${entry}": ` : ''
  const code = errno(err)
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    const target = Buffer.from(setup.root, 'latin1').toString()
    return { code: 'ERR_NO_SPACE', message: `${where}target ${target} is full (${code}; ${spaceLeft(setup.root)})` }
  }
  return { code: 'ERR_ARCHIVE', message: `extraction failed: ${where}${(err as Error)?.message ?? String(err)}` }
}

function apply (jail: Jail, op: ExtractOp, data: Uint8Array): void {
  switch (op.kind) {
    case 'directory': jail.directory(op.rel, op.name, op.attrs, op.xattrs); break
    case 'file': jail.beginFile(op.rel, op.name, op.attrs, op.xattrs, op.size, op.sparse); break
    case 'data': jail.write(op.offset, data.subarray(op.at, op.at + op.length)); break
    case 'end-file': jail.endFile(); break
    case 'symlink': jail.symlink(op.rel, op.name, op.attrs, op.xattrs, op.target); break
    case 'link': jail.hardlink(op.rel, op.name, op.target); break
    case 'fifo':
    case 'character-device':
    case 'block-device': jail.node(op.rel, op.name, op.kind, op.attrs, op.xattrs, op.major, op.minor); break
  }
}

function serve (): void {
  const port = parentPort
  if (port === null) return
  /** The current session and its jail; earlier sessions' messages are ignored. */
  let session = -1
  let setup: WorkerSetup | undefined
  let jail: Jail | undefined
  /** The entry being worked on, named in errors the jail does not name itself. */
  let entry: string | undefined
  let failed = false
  let mostTimesWaiting = 0
  const post = (m: FromWorker): void => port.postMessage(m)
  const fail = (err: unknown, s: number): void => {
    if (s !== session || failed) return
    failed = true
    jail?.closeOpenFile()
    post({ session: s, type: 'failed', failure: failureOf(err, setup!, entry) })
  }

  const handle = async (m: Extract<ToWorker, { type: 'batch' | 'finish' }>): Promise<void> => {
    if (failed || m.session !== session || jail === undefined) return
    const j = jail
    if (m.type === 'batch') {
      const data = new Uint8Array(m.data)
      for (const op of m.ops) {
        if ('name' in op) entry = op.name
        apply(j, op, data)
      }
      // Past a bound, the exact times that wait are applied, even with a file half written:
      // when files are large, nearly every batch ends inside one, and waiting for a batch
      // that does not let them grow with the entry count (40 000 on /usr, 20 MiB of heap).
      mostTimesWaiting = Math.max(mostTimesWaiting, j.timesWaiting)
      if (j.timesDue) await j.flushTimes()
      port.postMessage({ session: m.session, type: 'batch-done', seq: m.seq, data: m.data } satisfies FromWorker, [m.data])
      return
    }
    entry = undefined
    await j.finish(m.skipRoot)
    post({ session: m.session, type: 'finished', mostTimesWaiting })
  }
  // Batches run one after the other, in order; a start or an abort is answered at once.
  let queue = Promise.resolve()
  port.on('message', (m: ToWorker) => {
    if (m.type === 'start') {
      session = m.session
      setup = m.setup
      jail = new Jail(m.setup.root, m.setup.marker, m.setup.timeFixesPerRun)
      entry = undefined
      mostTimesWaiting = 0
      failed = false
      return
    }
    if (m.session !== session) return
    if (m.type === 'abort') {
      failed = true // batches still queued are dropped
      jail?.closeOpenFile()
      post({ session: m.session, type: 'aborted' })
      return
    }
    queue = queue.then(() => handle(m)).catch(err => fail(err, m.session))
  })
}

serve()
