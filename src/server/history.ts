// Every deployment the server has seen, kept in SQLite (node:sqlite, in the repository):
// one row per node and run, with its start, end, outcome, error code and the bytes it
// took from the server and from its peers. The server writes at each step of a node
// (not at each progress report); `si-server history` and the dashboard read it.
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { SiError } from '../errors.ts'
import { isTerminalPhase } from '../formats/node-report.ts'
import type { NodeSummary } from './fleet.ts'

/** Rows kept: the oldest go past this, so a flood of invented runs cannot fill the disk. */
export const MAX_HISTORY_ROWS = 500_000
/** How often (in writes) the row count is checked against the bound. */
const PRUNE_EVERY_WRITES = 1_000
/** A reader waits this long for the server's write to finish. */
const BUSY_TIMEOUT_MS = 2_000
const SCHEMA_VERSION = 1

const SCHEMA = `
CREATE TABLE IF NOT EXISTS deployments (
  node TEXT NOT NULL,
  run TEXT NOT NULL,
  image TEXT,
  grp TEXT,
  address TEXT,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  booted_at INTEGER,
  outcome TEXT NOT NULL,
  step TEXT,
  error_code TEXT,
  error_message TEXT,
  bytes_from_server INTEGER NOT NULL DEFAULT 0,
  bytes_from_peers INTEGER NOT NULL DEFAULT 0,
  uploaded INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (node, run)
);
CREATE INDEX IF NOT EXISTS deployments_by_start ON deployments (started_at);
`

/** One deployment of one node. Times in ms since the epoch. */
export interface Deployment {
  node: string
  run: string
  image: string | null
  group: string | null
  address: string | null
  startedAt: number
  endedAt: number | null
  bootedAt: number | null
  /** running, done, failed or booted */
  outcome: string
  step: string | null
  errorCode: string | null
  errorMessage: string | null
  bytesFromServer: number
  bytesFromPeers: number
  uploaded: number
}

export interface HistoryQuery {
  /** NAME (any version) or NAME@N */
  image?: string
  since?: Date
  limit?: number
}

interface Row {
  node: string; run: string; image: string | null; grp: string | null; address: string | null
  started_at: number; ended_at: number | null; booted_at: number | null; outcome: string; step: string | null
  error_code: string | null; error_message: string | null; bytes_from_server: number; bytes_from_peers: number; uploaded: number
}

function fromRow (r: Row): Deployment {
  return {
    node: r.node,
    run: r.run,
    image: r.image,
    group: r.grp,
    address: r.address,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    bootedAt: r.booted_at,
    outcome: r.outcome,
    step: r.step,
    errorCode: r.error_code,
    errorMessage: r.error_message,
    bytesFromServer: r.bytes_from_server,
    bytesFromPeers: r.bytes_from_peers,
    uploaded: r.uploaded
  }
}

export class DeploymentHistory {
  private readonly db: DatabaseSync
  private readonly upsert: StatementSync | undefined
  private writes = 0

  private constructor (db: DatabaseSync, writable: boolean) {
    this.db = db
    this.upsert = writable
      ? db.prepare(`INSERT INTO deployments (node, run, image, grp, address, started_at, ended_at, booted_at, outcome, step, error_code, error_message, bytes_from_server, bytes_from_peers, uploaded)
          VALUES (:node, :run, :image, :grp, :address, :started_at, :ended_at, :booted_at, :outcome, :step, :error_code, :error_message, :bytes_from_server, :bytes_from_peers, :uploaded)
          ON CONFLICT (node, run) DO UPDATE SET
            image = coalesce(excluded.image, image), grp = coalesce(excluded.grp, grp), address = excluded.address,
            ended_at = coalesce(ended_at, excluded.ended_at), booted_at = coalesce(booted_at, excluded.booted_at),
            outcome = excluded.outcome, step = excluded.step, error_code = excluded.error_code, error_message = excluded.error_message,
            bytes_from_server = max(bytes_from_server, excluded.bytes_from_server), bytes_from_peers = max(bytes_from_peers, excluded.bytes_from_peers),
            uploaded = max(uploaded, excluded.uploaded)`)
      : undefined
  }

  /** The server's history, created on first use. */
  static openForWriting (file: string): DeploymentHistory {
    // A server started on a repository not made yet still keeps its history.
    try { mkdirSync(dirname(file), { recursive: true }) } catch (err) { throw new SiError('ERR_HISTORY', `${dirname(file)}: ${(err as Error).message}`, { cause: err }) }
    const db = open(file, false)
    try {
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;')
      db.exec(SCHEMA)
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`)
    } catch (err) {
      db.close()
      throw new SiError('ERR_HISTORY', `${file}: ${(err as Error).message}`, { cause: err })
    }
    return new DeploymentHistory(db, true)
  }

  /** For `si-server history`, while the server may be writing. */
  static openForReading (file: string): DeploymentHistory {
    return new DeploymentHistory(open(file, true), false)
  }

  /** Records a node's state at a step: a new run makes a row, later steps update it. */
  save (n: NodeSummary): void {
    if (this.upsert === undefined) throw new SiError('ERR_HISTORY', 'the history was opened for reading')
    const terminal = isTerminalPhase(n.phase)
    this.upsert.run({
      node: n.node,
      run: n.run ?? '',
      image: n.image ?? null,
      grp: n.group ?? null,
      address: n.address,
      started_at: n.firstSeen,
      ended_at: n.phase === 'done' || n.phase === 'failed' ? n.updatedAt : null,
      booted_at: n.phase === 'booted' ? n.updatedAt : null,
      outcome: terminal ? n.phase : 'running',
      step: n.error?.step ?? n.step ?? n.phase,
      error_code: n.error?.code ?? null,
      error_message: n.error?.message ?? null,
      bytes_from_server: n.bytesFromServer ?? 0,
      bytes_from_peers: n.bytesFromPeers ?? 0,
      uploaded: n.uploaded ?? 0
    })
    if (++this.writes % PRUNE_EVERY_WRITES === 0) this.prune(MAX_HISTORY_ROWS)
  }

  /** Keeps the newest `rows` deployments. */
  prune (rows: number): void {
    this.db.prepare('DELETE FROM deployments WHERE rowid IN (SELECT rowid FROM deployments ORDER BY started_at DESC LIMIT -1 OFFSET ?)').run(rows)
  }

  /** Newest first. */
  list (q: HistoryQuery = {}): Deployment[] {
    const where: string[] = []
    const params: Record<string, string | number> = {}
    if (q.image !== undefined) {
      if (q.image.includes('@')) where.push('image = :image'); else where.push("(image = :image OR image LIKE :image || '@%')")
      params.image = q.image
    }
    if (q.since !== undefined) {
      where.push('started_at >= :since')
      params.since = q.since.getTime()
    }
    params.limit = q.limit ?? 1000
    const sql = `SELECT * FROM deployments ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY started_at DESC, node LIMIT :limit`
    return (this.db.prepare(sql).all(params) as unknown as Row[]).map(fromRow)
  }

  close (): void {
    if (this.db.isOpen) this.db.close()
  }
}

function open (file: string, readOnly: boolean): DatabaseSync {
  try {
    const db = new DatabaseSync(file, { readOnly })
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
    return db
  } catch (err) {
    const why = (err as Error).message
    throw new SiError('ERR_HISTORY', readOnly && /unable to open/i.test(why) ? `${file}: no history yet (si-server serve records one once nodes report)` : `${file}: ${why}`, { cause: err })
  }
}
