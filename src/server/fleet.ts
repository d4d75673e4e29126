// What every node last told the server about its install, with each node's timeline,
// rate samples and (after a failure) console log: the data behind the dashboard, the
// console monitor, the metrics and the history. Bounded in node count and in bytes
// whatever is posted; reads are pages, never the whole fleet in one string.
import { EventEmitter } from 'node:events'
import { FLEET_PHASES, isTerminalPhase, type FleetPhase, type NodeReport, type ReportedError } from '../formats/node-report.ts'
import { compareNodeNames } from '../formats/node-name.ts'
import { DEFAULT_FLEET_CONFIG, type FleetConfig } from './console-config.ts'

/** Fixed cost of a node's entry besides what it was sent (keys, numbers, the map's own). */
const ENTRY_OVERHEAD_BYTES = 600
const TIMELINE_ENTRY_OVERHEAD_BYTES = 80
const RATE_SAMPLE_BYTES = 3 * 8
/** Timeline entries and rate samples a node keeps when the fleet is out of room. */
const SHED_KEEP = 4
export const SORT_KEYS = ['node', 'phase', 'progress', 'downloadRate', 'uploadRate', 'updated', 'image', 'group'] as const
export type SortKey = typeof SORT_KEYS[number]

export interface TimelineEntry { at: number; phase: FleetPhase; step?: string; detail?: string }

/** What a listing shows of a node: its last report, flattened, without the log. */
export interface NodeSummary extends Omit<NodeReport, 'log'> {
  node: string
  address: string
  group?: string
  /** ms since the epoch */
  firstSeen: number
  updatedAt: number
  phaseSince: number
  /** the fleet-wide update counter when this node last changed */
  seq: number
}

export interface NodeDetail extends NodeSummary {
  timeline: TimelineEntry[]
  log?: string
  /** [ms since the epoch, download bytes/s, upload bytes/s] */
  rates: Array<[number, number, number]>
}

interface Entry {
  summary: NodeSummary
  timeline: TimelineEntry[]
  log?: string
  rates: Array<[number, number, number]>
  bytes: number
}

export type RecordOutcome =
  | { ok: true; node: NodeSummary; intervalSeconds: number }
  | { ok: false; reason: 'fleet-full' | 'address-full'; message: string }

export interface ListQuery {
  phase?: string
  image?: string
  group?: string
  /** node names containing this */
  search?: string
  /** only nodes changed after this update counter */
  since?: number
  sort?: SortKey
  descending?: boolean
  offset?: number
  limit?: number
}

export interface NodePage { total: number; offset: number; limit: number; seq: number; nodes: NodeSummary[] }

/** One sample of the whole fleet, for the live charts. Rates in bytes per second. */
export interface FleetSample {
  at: number
  downloadRate: number
  serverUploadRate: number
  peerUploadRate: number
  phases: Partial<Record<FleetPhase, number>>
}

export interface FleetTally {
  byPhase: Partial<Record<FleetPhase, number>>
  /** by image ('' when not yet known), then by phase */
  byImagePhase: Map<string, Partial<Record<FleetPhase, number>>>
  bytesFromServer: number
  bytesFromPeers: number
}

export interface FleetEvents {
  /** a node's step, phase or run changed (not mere figures): the history records these */
  step: [node: NodeSummary, previous: NodeSummary | undefined]
  /** a node entered a phase: the metrics count failures by code */
  phase: [node: NodeSummary, phase: FleetPhase, error: ReportedError | undefined]
}

export interface FleetOptions {
  config?: Partial<FleetConfig>
  now?: () => number
  /** the node's group (plans' groups.conf), looked up when a node first reports or changes MACs */
  groupOf?: (node: string, macs: string[]) => string | undefined
  /** NAME@VERSION of an image by its info hash */
  imageOf?: (infoHashHex: string) => string | undefined
}

export class Fleet extends EventEmitter<FleetEvents> {
  readonly config: Readonly<FleetConfig>
  /** in the order of their last update: the first are the longest silent */
  private readonly nodes = new Map<string, Entry>()
  private readonly namesByAddress = new Map<string, Set<string>>()
  private readonly samples: FleetSample[] = []
  private readonly now: () => number
  private readonly opts: FleetOptions
  private bytes = 0
  private seq = 0
  private active = 0

  constructor (opts: FleetOptions = {}) {
    super()
    this.opts = opts
    this.config = Object.freeze({ ...DEFAULT_FLEET_CONFIG, ...opts.config })
    this.now = opts.now ?? Date.now
  }

  get size (): number { return this.nodes.size }
  get storedBytes (): number { return this.bytes }
  get updateCounter (): number { return this.seq }

  /**
   * How often each node should send its figures: the fleet-wide report rate stays near
   * the target however many nodes are installing.
   */
  intervalSeconds (): number {
    const c = this.config
    return Math.min(c.maxReportIntervalSeconds, Math.max(c.minReportIntervalSeconds, Math.ceil(this.active / c.targetReportsPerSecond)))
  }

  record (node: string, address: string, report: NodeReport): RecordOutcome {
    const now = this.now()
    const entry = this.nodes.get(node)
    if (entry === undefined) {
      const names = this.namesByAddress.get(address)
      if (names !== undefined && names.size >= this.config.maxNodesPerAddress) {
        return { ok: false, reason: 'address-full', message: `${address} already reports for ${names.size} nodes (at most ${this.config.maxNodesPerAddress})` }
      }
    }
    const previous = entry?.summary
    const sameRun = previous !== undefined && (report.run === undefined || report.run === previous.run)
    const { log, ...fields } = report
    // Figures from an earlier message stay until replaced; a new run starts afresh.
    const summary: NodeSummary = {
      ...(sameRun ? previous : {}),
      ...fields,
      run: report.run ?? (sameRun ? previous.run : `server-${now.toString(36)}`),
      node,
      address,
      firstSeen: sameRun ? previous.firstSeen : now,
      updatedAt: now,
      phaseSince: sameRun && previous.phase === report.phase ? previous.phaseSince : now,
      seq: this.seq + 1
    }
    // An error belongs to the failure it explains: a new run or a recovered phase clears it.
    if (report.error === undefined && summary.phase !== 'failed') delete summary.error
    if (summary.group === undefined || report.identity !== undefined) {
      const group = this.opts.groupOf?.(node, summary.identity?.macs ?? [])
      if (group !== undefined) summary.group = group; else delete summary.group
    }
    if (report.infoHash !== undefined) summary.image = this.opts.imageOf?.(report.infoHash) ?? summary.image

    const prior = sameRun ? entry : undefined
    const next: Entry = { summary, timeline: prior?.timeline.slice() ?? [], rates: prior?.rates.slice() ?? [], bytes: 0 }
    const keptLog = log ?? prior?.log
    if (keptLog !== undefined) next.log = keptLog
    if (report.downloadRate !== undefined || report.uploadRate !== undefined) {
      next.rates.push([now, summary.downloadRate ?? 0, summary.uploadRate ?? 0])
      if (next.rates.length > this.config.nodeRateSamples) next.rates.shift()
    }
    const last = next.timeline[next.timeline.length - 1]
    const stepChanged = last === undefined || last.phase !== summary.phase || last.step !== summary.step
    if (stepChanged) {
      next.timeline.push({ at: now, phase: summary.phase, ...(summary.step !== undefined ? { step: summary.step } : {}), ...(summary.detail !== undefined ? { detail: summary.detail } : {}) })
      if (next.timeline.length > this.config.timelineEntries) next.timeline.shift()
    }
    next.bytes = entryBytes(next)
    if (!this.makeRoom(next.bytes - (entry?.bytes ?? 0), entry === undefined, node)) {
      // Full of nodes still installing: keep what matters most (the report) and shed the rest.
      shed(next)
      if (!this.makeRoom(next.bytes - (entry?.bytes ?? 0), entry === undefined, node)) {
        return { ok: false, reason: 'fleet-full', message: `the fleet view is full (${this.nodes.size} nodes, ${this.bytes} bytes) and no node has finished` }
      }
    }

    this.seq++
    if (entry !== undefined) {
      this.forget(node, entry)
      if (previous !== undefined && previous.address !== address) this.namesByAddress.get(previous.address)?.delete(node)
    }
    this.store(node, next)
    if (stepChanged) this.emit('step', summary, sameRun ? previous : undefined)
    if (previous === undefined || previous.phase !== summary.phase || !sameRun) this.emit('phase', summary, summary.phase, summary.error)
    return { ok: true, node: summary, intervalSeconds: this.intervalSeconds() }
  }

  get (node: string): NodeDetail | undefined {
    const e = this.nodes.get(node)
    if (e === undefined) return undefined
    return { ...e.summary, timeline: [...e.timeline], rates: [...e.rates], ...(e.log !== undefined ? { log: e.log } : {}) }
  }

  /** Every node's summary, by name: for counting and for callers that need them all. */
  list (): NodeSummary[] {
    return [...this.nodes.values()].map(e => e.summary).sort((a, b) => compareNodeNames(a.node, b.node))
  }

  page (q: ListQuery = {}): NodePage {
    const search = q.search?.toLowerCase()
    const matching: NodeSummary[] = []
    for (const { summary: s } of this.nodes.values()) {
      if (q.since !== undefined && s.seq <= q.since) continue
      if (q.phase !== undefined && s.phase !== q.phase) continue
      if (q.image !== undefined && s.image !== q.image) continue
      if (q.group !== undefined && s.group !== q.group) continue
      if (search !== undefined && !s.node.toLowerCase().includes(search)) continue
      matching.push(s)
    }
    const compare = comparator(q.sort ?? 'node')
    matching.sort(q.descending === true ? (a, b) => compare(b, a) : compare)
    const offset = Math.max(0, q.offset ?? 0)
    const limit = Math.min(this.config.maxPageSize, Math.max(1, q.limit ?? this.config.maxPageSize))
    return { total: matching.length, offset, limit, seq: this.seq, nodes: matching.slice(offset, offset + limit) }
  }

  /** Node counts by phase and by image and phase, and the bytes nodes received, in one pass. */
  tally (): FleetTally {
    const t: FleetTally = { byPhase: {}, byImagePhase: new Map(), bytesFromServer: 0, bytesFromPeers: 0 }
    for (const { summary: s } of this.nodes.values()) {
      t.byPhase[s.phase] = (t.byPhase[s.phase] ?? 0) + 1
      const image = s.image ?? ''
      const counts = t.byImagePhase.get(image) ?? {}
      counts[s.phase] = (counts[s.phase] ?? 0) + 1
      t.byImagePhase.set(image, counts)
      t.bytesFromServer += s.bytesFromServer ?? 0
      t.bytesFromPeers += s.bytesFromPeers ?? 0
    }
    return t
  }

  /** Takes a fleet-wide sample for the charts; the server's own upload rate comes from its counters. */
  sample (serverUploadRate: number): FleetSample {
    const now = this.now()
    const fresh = now - this.config.staleIntervals * this.intervalSeconds() * 1000
    let downloadRate = 0
    let peerUploadRate = 0
    for (const { summary: s } of this.nodes.values()) {
      if (s.updatedAt < fresh || isTerminalPhase(s.phase)) continue
      downloadRate += s.downloadRate ?? 0
      peerUploadRate += s.uploadRate ?? 0
    }
    const sample: FleetSample = { at: now, downloadRate, serverUploadRate, peerUploadRate, phases: this.tally().byPhase }
    this.samples.push(sample)
    if (this.samples.length > this.config.seriesSamples) this.samples.shift()
    return sample
  }

  /** Samples taken after `since` (ms since the epoch). */
  series (since = 0): FleetSample[] {
    let i = this.samples.length
    while (i > 0 && this.samples[i - 1].at > since) i--
    return this.samples.slice(i)
  }

  private store (node: string, e: Entry): void {
    this.nodes.set(node, e)
    this.bytes += e.bytes
    if (!isTerminalPhase(e.summary.phase)) this.active++
    const names = this.namesByAddress.get(e.summary.address) ?? new Set<string>()
    names.add(node)
    this.namesByAddress.set(e.summary.address, names)
  }

  /** Takes a node out of the order and the totals, before it is stored again or evicted. */
  private forget (node: string, e: Entry): void {
    this.nodes.delete(node)
    this.bytes -= e.bytes
    if (!isTerminalPhase(e.summary.phase)) this.active--
  }

  /**
   * Evicts finished nodes (never `keep`), longest silent first, until `growth` more bytes
   * and, for a new node, one more node fit.
   */
  private makeRoom (growth: number, newNode: boolean, keep: string): boolean {
    const fits = (): boolean => this.nodes.size + (newNode ? 1 : 0) <= this.config.maxNodes && this.bytes + growth <= this.config.maxBytes
    if (fits()) return true
    for (const [node, e] of this.nodes) {
      if (node === keep || !isTerminalPhase(e.summary.phase)) continue
      this.forget(node, e)
      const names = this.namesByAddress.get(e.summary.address)
      names?.delete(node)
      if (names?.size === 0) this.namesByAddress.delete(e.summary.address)
      if (fits()) return true
    }
    return false
  }
}

function entryBytes (e: Entry): number {
  return ENTRY_OVERHEAD_BYTES + JSON.stringify(e.summary).length + (e.log?.length ?? 0) +
    e.timeline.reduce((n, t) => n + TIMELINE_ENTRY_OVERHEAD_BYTES + (t.detail?.length ?? 0), 0) + e.rates.length * RATE_SAMPLE_BYTES
}

/** What a node keeps when the fleet is out of room: its report, its last steps and rates, no log. */
function shed (e: Entry): void {
  delete e.log
  e.timeline = e.timeline.slice(-SHED_KEEP)
  e.rates = e.rates.slice(-SHED_KEEP)
  e.bytes = entryBytes(e)
}

const PHASE_ORDER = new Map<string, number>(FLEET_PHASES.map((p, i) => [p, i]))

function comparator (key: SortKey): (a: NodeSummary, b: NodeSummary) => number {
  const byName = (a: NodeSummary, b: NodeSummary): number => compareNodeNames(a.node, b.node)
  const then = (f: (a: NodeSummary, b: NodeSummary) => number) => (a: NodeSummary, b: NodeSummary) => f(a, b) || byName(a, b)
  switch (key) {
    case 'node': return byName
    case 'phase': return then((a, b) => (PHASE_ORDER.get(a.phase) ?? 0) - (PHASE_ORDER.get(b.phase) ?? 0))
    case 'progress': return then((a, b) => (a.progress ?? 0) - (b.progress ?? 0))
    case 'downloadRate': return then((a, b) => (a.downloadRate ?? 0) - (b.downloadRate ?? 0))
    case 'uploadRate': return then((a, b) => (a.uploadRate ?? 0) - (b.uploadRate ?? 0))
    case 'updated': return then((a, b) => a.updatedAt - b.updatedAt)
    case 'image': return then((a, b) => (a.image ?? '').localeCompare(b.image ?? ''))
    case 'group': return then((a, b) => (a.group ?? '').localeCompare(b.group ?? ''))
  }
}
