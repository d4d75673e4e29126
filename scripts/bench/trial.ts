// One trial: one transport delivering the image to every node of a cluster, timed from
// the first node's start. T is when the slowest node holds the verified image; server
// bytes are what crossed the server's link (interface counters, headers included).
import type { ChildProcess } from 'node:child_process'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describeError } from '../../src/errors.ts'
import type { Cluster, HostHealth, LinkCounters, LinkHealth } from './cluster.ts'
import { exitOf, sleep, spawnTracked, stopChild, tail } from './exec.ts'
import { startImageServer, type RunningServer, type ServerStatus } from './image-server.ts'
import type { BenchImage } from './image.ts'
import { cpuBetween, fluidBound, readCpu, treeCpuSeconds, round, unicastBound, type CpuSample } from './metrics.ts'
import { summarise, type TreeSummary } from './tree-check.ts'
import type { ServerSide, Transport, TrialContext } from './transports/types.ts'

export const SAMPLE_INTERVAL_MS = 1_000
/**
 * Link counters are read more often than the CPU: a node's tail and the server's last
 * bytes last a second or two, and the timeline (timeline.ts) needs to see them.
 */
export const DEFAULT_LINK_SAMPLE_MS = 250
/** A trial is abandoned after this multiple of the unicast bound (plus the stagger and a margin). */
const TIMEOUT_FACTOR = 4
const TIMEOUT_MARGIN_S = 60
/** Warnings kept per node in the results: enough to see why it failed. */
const MAX_NODE_WARNINGS = 10
/**
 * A trial starts on a quiet network: new namespaces chatter for several seconds (IPv6
 * router solicitations and address checks: 7 s at N=32) and a trial before may leave
 * queues draining, which the first transport of a scenario would otherwise pay for.
 */
const QUIET_BYTES_PER_S = 2_000
const QUIET_MAX_WAIT_MS = 20_000

export interface TrialOptions {
  cluster: Cluster
  image: BenchImage
  imageTree: TreeSummary
  transport: Transport
  agentBin: string
  serverBin: string
  repo: string
  workDir: string
  staggerSeconds: number
  /** when node i starts, in seconds after the first (default: i · staggerSeconds) */
  startAt?: (i: number) => number
  /** extra si-server serve flags */
  serverArgs?: string[]
  /** runs alongside the trial from the first start, to inject faults (make reliability) */
  during?: (control: TrialControl) => Promise<void>
  /** how often the link counters are read (CPU figures: each SAMPLE_INTERVAL_MS) */
  linkSampleMs?: number
  log: (line: string) => void
}

/** What a fault injector may do to a running trial. */
export interface TrialControl {
  /** seconds since the first node started */
  now(): number
  serverUrl: string
  /** the nodes' verified bytes so far, in node order (from their progress events) */
  verifiedBytes(): number[]
  /** kills si-server (SIGKILL: no goodbye to anyone) */
  crashServer(): Promise<void>
  /** starts si-server again on the same repository */
  restartServer(): Promise<void>
  /** kills node i's client (SIGKILL); the trial waits for its relaunch */
  crashNode(i: number): Promise<void>
  /** starts node i's client again with the same command, target and staging */
  relaunchNode(i: number): void
  /** whether the trial is over (every node exited or the time is up) */
  finished(): boolean
}

export interface NodeResult {
  name: string
  rateMbit: number
  startedAt: number
  verifiedAt?: number
  exitedAt?: number
  exit?: number | string
  ok: boolean
  error?: string
  /** from the agent's done event */
  downloadedFromServer?: number
  /** payload bytes received, duplicates included */
  downloaded?: number
  uploaded?: number
  peakRssBytes?: number
  /** CPU seconds the client used, as last sampled (within a second of its exit) */
  cpuSeconds?: number
  /** [seconds since trial start, cumulative bytes received] */
  received: Array<[number, number]>
  /** [seconds since trial start, cumulative bytes sent]: the node's uplink, which relays to its peers */
  sent?: Array<[number, number]>
  /** [seconds since trial start, verified bytes] from the agent's progress events, one a second */
  verified: Array<[number, number]>
  /** the agent's last warnings (dropped peers, tracker trouble), to tell why a node failed */
  warnings?: string[]
  /** times the client was killed and started again by a fault injector */
  relaunches?: number
  /** the agent's last verified piece: seconds since trial start, and who sent it (server, or node names) */
  lastPiece?: { at: number; from: string[] }
}

export interface TrialResult {
  transport: string
  label: string
  nodes: number
  imageBytes: number
  staggerSeconds: number
  ok: boolean
  failures: number
  /** seconds from the first start until the slowest node held the verified image */
  T: number | null
  tStar: number
  tUnicast: number
  /** bytes sent by the server host, from the bridge port's counters */
  serverBytes: number
  /** [seconds since trial start, cumulative bytes the server host sent] */
  serverSent: Array<[number, number]>
  serverStatus?: ServerStatus
  /** during the trial: the server's TCP retransmissions and queue drops, and the nodes' together */
  health?: { server: HostHealth; nodes: HostHealth }
  cpuMean: number
  cpuPeak: number
  /** CPU seconds used by the node clients together, and by si-server (sampled each second) */
  clientCpuSeconds: number
  serverCpuSeconds?: number
  wallSeconds: number
  nodeResults: NodeResult[]
  cpuSeries: Array<[number, number]>
  notes: string[]
}

interface LiveNode { result: NodeResult; child?: ChildProcess; target: string; stderr?: () => string; command?: string[]; down?: boolean }

export async function runTrial (opts: TrialOptions): Promise<TrialResult> {
  const { cluster, image, transport } = opts
  const nodes = cluster.nodes
  const startAt = opts.startAt ?? ((i: number) => i * opts.staggerSeconds)
  const tStar = fluidBound(image.size, cluster.server.link, nodes.map(n => n.link), startAt)
  const tUnicast = unicastBound(image.size, cluster.server.link, nodes.map(n => n.link))
  const timeoutS = TIMEOUT_FACTOR * tUnicast + Math.max(...nodes.map((_, i) => startAt(i))) + TIMEOUT_MARGIN_S
  const notes: string[] = []
  await rm(opts.workDir, { recursive: true, force: true })
  await mkdir(opts.workDir, { recursive: true })

  let server: RunningServer | undefined
  let side: ServerSide | undefined
  const live: LiveNode[] = nodes.map(n => ({
    target: join(opts.workDir, n.name),
    result: { name: n.name, rateMbit: n.link.rateMbit, startedAt: 0, ok: false, received: [], sent: [], verified: [] }
  }))
  const cpuSeries: Array<[number, number]> = []
  const serverSent: Array<[number, number]> = [[0, 0]]
  const serverName = cluster.server.name
  let serverStatus: ServerStatus | undefined
  let t0 = 0
  let cpu0: CpuSample = readCpu()
  let counters0: LinkCounters = {}
  let counters1: LinkCounters = {}
  let health0: LinkHealth = {}
  let health1: LinkHealth = {}
  let stopLaunching = false
  let serverCpu: number | undefined
  try {
    const settled = await waitForQuiet(cluster)
    if (settled.seconds > 1) notes.push(`waited ${settled.seconds} s for the links to go quiet (${settled.bytesPerSecond} B/s last)`)
    if (transport.needsImageServer) server = await startImageServer(opts.serverBin, cluster.server.ns, opts.repo, opts.serverArgs)
    const ctx: TrialContext = { cluster, image, agentBin: opts.agentBin, serverBin: opts.serverBin, workDir: opts.workDir, serverUrl: server?.url ?? '' }
    for (const n of live) await mkdir(n.target, { recursive: true })
    side = await transport.startServerSide?.(ctx)

    health0 = await cluster.health()
    counters0 = await cluster.counters()
    cpu0 = readCpu()
    t0 = performance.now()
    for (const n of live) { n.result.received.push([0, 0]); n.result.sent?.push([0, 0]) }
    const now = (): number => (performance.now() - t0) / 1000
    const exits: Array<Promise<unknown>> = []
    const starter = (async () => {
      for (let i = 0; i < nodes.length && !stopLaunching; i++) {
        const wait = startAt(i) * 1000 - (performance.now() - t0)
        if (wait > 0) await sleep(wait)
        if (stopLaunching) return
        const command = transport.nodeCommand(ctx, nodes[i], live[i].target)
        live[i].command = command
        exits.push(launch(live[i], nodes[i].ns, command, transport, now))
      }
    })()
    let over = false
    const control: TrialControl = {
      now,
      serverUrl: ctx.serverUrl,
      verifiedBytes: () => live.map(n => n.result.verified.at(-1)?.[1] ?? 0),
      crashServer: async () => { await server?.crash() },
      restartServer: async () => { server = await startImageServer(opts.serverBin, cluster.server.ns, opts.repo, opts.serverArgs) },
      crashNode: async i => {
        const n = live[i]
        if (n.child === undefined || n.result.exitedAt !== undefined) return
        n.down = true
        await stopChild(n.child, 0, 'SIGKILL')
      },
      relaunchNode: i => {
        const n = live[i]
        if (n.command === undefined || stopLaunching) return
        n.result.exit = undefined
        n.result.exitedAt = undefined
        n.result.error = undefined
        n.down = false
        n.result.relaunches = (n.result.relaunches ?? 0) + 1
        exits.push(launch(n, nodes[i].ns, n.command, transport, now))
      },
      finished: () => over
    }
    const injector = opts.during?.(control).catch(err => { notes.push(`fault injector: ${describeError(err)}`) })

    // Sample until every node has exited or the time is up.
    let lastCpu = cpu0
    let lastCpuAt = 0
    const deadline = t0 + timeoutS * 1000
    for (;;) {
      await sleep(opts.linkSampleMs ?? DEFAULT_LINK_SAMPLE_MS)
      const c = await cluster.counters()
      const t = round(now(), 2)
      if (t - lastCpuAt >= SAMPLE_INTERVAL_MS / 1000) {
        const cpu = readCpu()
        cpuSeries.push([t, round(cpuBetween(lastCpu, cpu), 3)])
        lastCpu = cpu
        lastCpuAt = t
        const pids = [server?.pid, ...live.map(n => n.child?.pid)].filter((p): p is number => p !== undefined)
        const used = treeCpuSeconds(pids)
        serverCpu = (server?.pid !== undefined ? used.get(server.pid) : undefined) ?? serverCpu
        for (const n of live) n.result.cpuSeconds = (n.child?.pid !== undefined ? used.get(n.child.pid) : undefined) ?? n.result.cpuSeconds
      }
      for (let i = 0; i < nodes.length; i++) {
        const link = c[nodes[i].name]
        const start = counters0[nodes[i].name]
        live[i].result.received.push([t, link.received - (start?.received ?? 0)])
        live[i].result.sent?.push([t, link.sent - (start?.sent ?? 0)])
      }
      serverSent.push([t, (c[serverName]?.sent ?? 0) - (counters0[serverName]?.sent ?? 0)])
      const allStarted = live.every(n => n.child !== undefined) || stopLaunching
      if (allStarted && live.every(n => n.result.exitedAt !== undefined && n.down !== true)) break
      if (transport.verifiedMarker !== undefined && allStarted && live.every(n => n.result.verifiedAt !== undefined)) break
      if (performance.now() > deadline) {
        stopLaunching = true
        notes.push(`timed out after ${Math.round(timeoutS)} s; nodes still running were stopped`)
        break
      }
    }
    await starter
    const nameOf = new Map(cluster.hosts.map(h => [h.address, h.name]))
    for (const n of live) if (n.result.lastPiece !== undefined) n.result.lastPiece.from = n.result.lastPiece.from.map(a => nameOf.get(a) ?? a)
    over = true
    stopLaunching = true
    await injector
    counters1 = await cluster.counters()
    health1 = await cluster.health()
    if (server !== undefined) serverStatus = await server.status().catch(() => undefined)
    await Promise.all(live.map(n => n.child !== undefined ? stopChild(n.child) : undefined))
    await Promise.all(exits)
  } finally {
    stopLaunching = true
    await Promise.all(live.map(n => n.child !== undefined ? stopChild(n.child) : undefined))
    await side?.stop().catch(err => notes.push(`server side: ${describeError(err)}`))
    await server?.stop()
  }
  const cpu1 = readCpu()
  const wallSeconds = (performance.now() - t0) / 1000

  for (const n of live) {
    const r = n.result
    // A seeding client stopped by the harness after it verified has done its job.
    if (transport.verifiedMarker !== undefined && r.verifiedAt !== undefined) r.exit = 0
    if (r.exit !== 0 && r.error === undefined) r.error = `exit ${String(r.exit)}: ${(n.stderr?.() ?? '').trim().slice(-300)}`
    if (r.exit === 0 && r.verifiedAt === undefined) r.verifiedAt = r.exitedAt
    if (r.exit === 0) {
      try {
        const got = await summarise(n.target)
        if (got.digest !== opts.imageTree.digest) r.error = `target differs from the image: ${got.entries} entries, ${got.bytes} bytes (image: ${opts.imageTree.entries}, ${opts.imageTree.bytes})`
      } catch (err) {
        r.error = `cannot read target: ${describeError(err)}`
      }
    }
    r.ok = r.exit === 0 && r.error === undefined && r.verifiedAt !== undefined
  }
  await rm(opts.workDir, { recursive: true, force: true })

  const failures = live.filter(n => !n.result.ok).length
  const verified = live.map(n => n.result.verifiedAt ?? Infinity)
  const T = failures === 0 ? round(Math.max(...verified), 2) : null
  const serverBytes = (counters1[serverName]?.sent ?? 0) - (counters0[serverName]?.sent ?? 0)
  const cpuSamples = cpuSeries.map(s => s[1])
  return {
    transport: transport.id,
    label: transport.label,
    nodes: nodes.length,
    imageBytes: image.size,
    staggerSeconds: opts.staggerSeconds,
    ok: failures === 0,
    failures,
    T,
    tStar: round(tStar, 2),
    tUnicast: round(tUnicast, 2),
    serverBytes,
    serverSent,
    serverStatus,
    health: healthDuring(health0, health1, serverName),
    cpuMean: round(cpuBetween(cpu0, cpu1), 3),
    cpuPeak: cpuSamples.length > 0 ? Math.max(...cpuSamples) : 0,
    clientCpuSeconds: round(live.reduce((a, n) => a + (n.result.cpuSeconds ?? 0), 0), 2),
    serverCpuSeconds: serverCpu,
    wallSeconds: round(wallSeconds, 2),
    nodeResults: live.map(n => n.result),
    cpuSeries,
    notes
  }
}

function healthDuring (before: LinkHealth, after: LinkHealth, serverName: string): TrialResult['health'] {
  if (after[serverName] === undefined) return undefined
  const zero = (): HostHealth => ({ tcpSegmentsOut: 0, tcpRetransmitted: 0, uploadDrops: 0, downloadDrops: 0 })
  const delta = (name: string, into: HostHealth): void => {
    for (const k of Object.keys(into) as Array<keyof HostHealth>) into[k] += (after[name]?.[k] ?? 0) - (before[name]?.[k] ?? 0)
  }
  const server = zero()
  const nodes = zero()
  for (const name of Object.keys(after)) delta(name, name === serverName ? server : nodes)
  return { server, nodes }
}

/** Waits until all links together carry less than QUIET_BYTES_PER_S (at most QUIET_MAX_WAIT_MS). */
async function waitForQuiet (cluster: Cluster): Promise<{ seconds: number, bytesPerSecond: number }> {
  const total = (c: LinkCounters): number => Object.values(c).reduce((a, l) => a + l.sent + l.received, 0)
  const start = performance.now()
  let last = total(await cluster.counters())
  for (;;) {
    await sleep(SAMPLE_INTERVAL_MS)
    const now = total(await cluster.counters())
    const rate = (now - last) * 1000 / SAMPLE_INTERVAL_MS
    last = now
    const seconds = round((performance.now() - start) / 1000, 1)
    if (rate < QUIET_BYTES_PER_S || performance.now() - start > QUIET_MAX_WAIT_MS) return { seconds, bytesPerSecond: Math.round(rate) }
  }
}

/** Starts one node's client and follows it; resolves when it has exited. */
function launch (node: LiveNode, ns: string, command: string[], transport: Transport, now: () => number): Promise<void> {
  const [cmd, ...args] = command
  const child = spawnTracked('ip', ['netns', 'exec', ns, cmd, ...args])
  node.child = child
  node.result.startedAt = round(now(), 3)
  node.stderr = tail(child.stderr)
  if (child.stdout !== null) {
    const marker = transport.verifiedMarker
    if (transport.agentEvents) {
      createInterface({ input: child.stdout }).on('line', line => onAgentEvent(node.result, line, now))
    } else if (marker !== undefined) {
      createInterface({ input: child.stdout }).on('line', line => { if (line.includes(marker)) node.result.verifiedAt ??= round(now(), 3) })
    } else {
      child.stdout.resume()
    }
  }
  return exitOf(child).then(code => {
    if (node.child !== child) return // relaunched since
    node.result.exit = code
    node.result.exitedAt = round(now(), 3)
  })
}

function onAgentEvent (r: NodeResult, line: string, now: () => number): void {
  let ev: Record<string, unknown>
  try { ev = JSON.parse(line) as Record<string, unknown> } catch { return }
  // The image is verified and extracted when the agent starts seeding (bt) or is done.
  if ((ev.type === 'phase' && ev.phase === 'seeding') || ev.type === 'done') r.verifiedAt ??= round(now(), 3)
  if (ev.type === 'progress' && typeof ev.verifiedBytes === 'number') {
    const t = round(now(), 2)
    const last = r.verified.at(-1)
    // One sample a second is enough to see stalls; keep the final one too.
    if (last === undefined || t - last[0] >= 1 || ev.verifiedBytes === ev.length) r.verified.push([t, ev.verifiedBytes])
  }
  if (ev.type === 'done') {
    r.downloadedFromServer = ev.downloadedFromServer as number
    r.downloaded = ev.downloaded as number
    r.uploaded = ev.uploaded as number
    r.peakRssBytes = ev.peakRssBytes as number
    const last = ev.lastPiece as { at?: unknown; from?: unknown } | undefined
    if (typeof last?.at === 'number' && Array.isArray(last.from)) {
      // The agent's clock is this machine's: its wall time, moved onto the trial's.
      r.lastPiece = { at: round(now() - (Date.now() - last.at) / 1000, 2), from: last.from.map(String) }
    }
  }
  if (ev.type === 'error') r.error = `${String(ev.code)}: ${String(ev.message)}`
  if (ev.type === 'warning') {
    r.warnings ??= []
    r.warnings.push(`${round(now(), 1)} s: ${String(ev.message)}`)
    if (r.warnings.length > MAX_NODE_WARNINGS) r.warnings.shift()
  }
}
