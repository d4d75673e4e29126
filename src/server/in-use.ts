// Which image versions a running server sees being fetched, written into the repository.
// `si-server image rm` works on the repository directory while the server runs in another
// process (possibly on another host sharing the directory), so the server leaves a record
// there, renewed every few seconds, and the command reads it: a version that agents are
// fetching is not removed unless forced. A record past its validity is from a server that
// died: it is ignored.
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { describeError } from '../errors.ts'
import { withDefaults } from '../config/defaults.ts'

/** Under the repository root, one file per running server. */
export const IN_USE_DIR = '.in-use'

export interface InUseConfig {
  /** ms between renewals of the record. */
  writeIntervalMs: number
  /**
   * Renewals a record outlives: a reader takes a record older than this many intervals
   * for a server that stopped without cleaning up (killed, crashed).
   */
  validForIntervals: number
}

export const DEFAULT_IN_USE_CONFIG: Readonly<InUseConfig> = Object.freeze({
  writeIntervalMs: 2_000,
  validForIntervals: 3
})

export interface VersionInUse {
  /** images or overrides (absent in records of servers before overrides were served: images) */
  collection?: string
  name: string
  version: number
  infoHash: string
  /** the peers (HOST:PORT) the tracker lists as still downloading it */
  fetchers: string[]
}

export interface InUseRecord {
  /** who wrote it: host name and process id */
  server: string
  /** ms since the epoch */
  writtenAt: number
  validUntil: number
  versions: VersionInUse[]
}

/** The running server's side: renews its record until stopped, then removes it. */
export class InUseRecorder {
  private readonly config: Readonly<InUseConfig>
  private readonly file: string
  private readonly server = `${hostname()}:${process.pid}`
  private timer: NodeJS.Timeout | undefined
  private writing: Promise<void> = Promise.resolve()
  /** a failure is reported once, not at every renewal (a read-only repository) */
  private failing = false

  /** `collect` says what is in use now; `warn` hears of a record that could not be written. */
  constructor (private readonly repoRoot: string, private readonly collect: () => VersionInUse[], private readonly warn: (err: Error) => void, config?: Partial<InUseConfig>) {
    this.config = withDefaults(DEFAULT_IN_USE_CONFIG, config)
    this.file = join(repoRoot, IN_USE_DIR, `${hostname()}-${process.pid}.json`)
  }

  async start (): Promise<void> {
    await this.write()
    this.timer = setInterval(() => { void this.write() }, this.config.writeIntervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.writing
    await rm(this.file, { force: true })
  }

  /** Writes the record now (in the background of the next renewal too). */
  write (): Promise<void> {
    this.writing = this.writing.then(() => this.writeOnce())
    return this.writing
  }

  private async writeOnce (): Promise<void> {
    const now = Date.now()
    const record: InUseRecord = {
      server: this.server,
      writtenAt: now,
      validUntil: now + this.config.writeIntervalMs * this.config.validForIntervals,
      versions: this.collect().filter(v => v.fetchers.length > 0)
    }
    try {
      await mkdir(join(this.repoRoot, IN_USE_DIR), { recursive: true })
      // Renamed into place, so a reader never sees half a record.
      const tmp = `${this.file}.${randomBytes(4).toString('hex')}.tmp`
      await writeFile(tmp, JSON.stringify(record) + '\n')
      await rename(tmp, this.file)
      this.failing = false
    } catch (err) {
      if (!this.failing) this.warn(new Error(`cannot record the versions in use under ${this.repoRoot} (si-server image rm will not see them): ${describeError(err)}`))
      this.failing = true
    }
  }
}

/** The records of the servers running on this repository now (stale and unreadable ones left out). */
export async function readInUse (repoRoot: string, now = Date.now()): Promise<InUseRecord[]> {
  let names: string[]
  try {
    names = await readdir(join(repoRoot, IN_USE_DIR))
  } catch {
    return []
  }
  const records: InUseRecord[] = []
  for (const name of names.filter(n => n.endsWith('.json'))) {
    try {
      const record = JSON.parse(await readFile(join(repoRoot, IN_USE_DIR, name), 'utf8')) as InUseRecord
      if (typeof record.validUntil === 'number' && record.validUntil >= now && Array.isArray(record.versions)) records.push(record)
    } catch {
      // Being replaced, or not ours: a record that cannot be read protects nothing.
    }
  }
  return records
}

/** Who fetches a version of a collection, as the running servers see it: the peers, and the servers that saw them. */
export function fetchersOf (records: InUseRecord[], name: string, version: number, collection = 'images'): { peers: string[]; servers: string[] } {
  const peers = new Set<string>()
  const servers: string[] = []
  for (const record of records) {
    const entry = record.versions.find(v => (v.collection ?? 'images') === collection && v.name === name && v.version === version)
    if (entry === undefined || !Array.isArray(entry.fetchers) || entry.fetchers.length === 0) continue
    for (const peer of entry.fetchers) peers.add(String(peer))
    servers.push(record.server)
  }
  return { peers: [...peers], servers }
}
