// bench/REPORT.md and its SVG figures, from the results of one run.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { lineChart, type Series } from './svg.ts'
import { lateStartSeconds, ratesFrom, round, TRANSFER_BEGUN_FRACTION } from './metrics.ts'
import type { TrialResult } from './trial.ts'
import type { HostHealth } from './cluster.ts'
import type { RawResult } from './raw.ts'
import { checkTargets } from './targets.ts'
import { trialTimeline } from './timeline.ts'

export interface ScenarioResult {
  id: string
  group: string
  title: string
  nodes: number
  rateMbit: number
  staggerSeconds: number
  /** the torrent's piece size in this scenario */
  pieceLength?: number
  /** the image deployed (absent in results before the root-like image: the one-file image) */
  image?: { kind: string; bytes: number; entries: number }
  /** TCP congestion control of every host (absent: the machine's default, before it was set) */
  tcpCongestion?: string
  /** the namespaces the scenario's cluster was made of (all removed afterwards) */
  namespaces: string[]
  trials: TrialResult[]
}

export interface RunResult {
  plan: string
  startedAt: string
  /** the commit whose dist/ was measured, and how many files under src/ differed from it */
  source?: { commit: string; dirtySrcFiles: number; agentBin: string; serverBin: string }
  host: { cpus: number; kernel: string; tcpCongestion?: string }
  imageBytes: number
  pieceLength: number
  rateMbit: number
  scenarios: ScenarioResult[]
  /** with --merge: the scenarios (and transports) this run re-ran; the rest came from earlier runs */
  rerun?: string[]
  raw?: RawResult[]
  cleanup: { namespacesLeft: string[] }
}

const MB = 1e6

function n2 (x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits)
}

function pct (x: number): string { return `${Math.round(x * 100)}%` }

/** Mean machine CPU above this and a trial measures the CPU as much as the network (the issue's 70%). */
export const CPU_SATURATED = 0.7

function trialRow (t: TrialResult): string {
  const ratio = t.T === null ? null : t.T / t.tStar
  const fails = t.failures > 0 ? ` (${t.failures} failed)` : ''
  return `| ${t.label} | ${t.nodes} | ${n2(t.T, 1)}${fails} | ${n2(t.tStar, 1)} | ${n2(ratio)} | ${n2(t.serverBytes / t.imageBytes)} | ${n2(payloadPerNode(t))} | ${pct(t.cpuMean)} / ${pct(t.cpuPeak)}${t.cpuMean > CPU_SATURATED ? ' (saturated)' : ''} | ${n2((t.clientCpuSeconds ?? NaN) / t.nodes)} | ${resentShare(t)} |`
}

/** TCP segments sent again over all sent, by the server and by the nodes together (absent in older results). */
function resentShare (t: TrialResult): string {
  const h = t.health
  if (h === undefined) return '—'
  const share = (x: HostHealth): string => x.tcpSegmentsOut > 0 ? `${(100 * x.tcpRetransmitted / x.tcpSegmentsOut).toFixed(1)}%` : '—'
  return `${share(h.server)} / ${share(h.nodes)}`
}

function lateStartNote (t: TrialResult): string[] {
  const late = lateStartSeconds(t)
  return late === undefined ? [] : [`${t.label}: the server had sent ${TRANSFER_BEGUN_FRACTION * 100} % of the image only at ${late.toFixed(1)} s: its T counts a late start, not the transfer`]
}

/** Payload a node received over what it needed (the agent reports it; duplicates push it above 1). */
function payloadPerNode (t: TrialResult): number | null {
  const got = t.nodeResults.map(n => n.downloaded).filter((b): b is number => typeof b === 'number')
  if (got.length === 0) return null
  return got.reduce((a, b) => a + b, 0) / got.length / t.imageBytes
}

const TRIAL_HEADER = '| transport | N | T (s) | T* (s) | T/T* | server bytes / F | payload received / F per node | machine CPU mean / peak | client CPU s per node | TCP resent, server / nodes |\n|---|---|---|---|---|---|---|---|---|---|'

/** Deployment time against N, one line per transport (the paper's Figure 1). */
function timeVsNChart (scale: ScenarioResult[]): string {
  const byTransport = new Map<string, Series>()
  for (const s of scale) {
    for (const t of s.trials) {
      if (t.T === null) continue
      const series = byTransport.get(t.label) ?? { name: t.label.replace(/ \(.*\)$/, ''), points: [] }
      series.points.push([s.nodes, t.T])
      byTransport.set(t.label, series)
    }
  }
  const bound: Series = { name: 'T* (fluid bound)', dashed: true, color: '#000', points: scale.map(s => [s.nodes, s.trials[0]?.tStar ?? NaN]) }
  return lineChart([...byTransport.values(), bound], { title: 'Deployment time against N', xLabel: 'nodes (N)', yLabel: 'T: slowest node verified (s)', logX: true, markers: true })
}

/** T/T* against N: the swarm transports close up, unicast clipped at the top. */
function ratioVsNChart (scale: ScenarioResult[]): string {
  const byTransport = new Map<string, Series>()
  for (const s of scale) {
    for (const t of s.trials) {
      if (t.T === null) continue
      const series = byTransport.get(t.label) ?? { name: t.label.replace(/ \(.*\)$/, ''), points: [] }
      series.points.push([s.nodes, t.T / t.tStar])
      byTransport.set(t.label, series)
    }
  }
  return lineChart([...byTransport.values()], { title: 'T / T* against N (clipped at 6)', xLabel: 'nodes (N)', yLabel: 'T / T*', logX: true, markers: true, yMax: 6 })
}

/** Samples at least a second apart: rates over shorter steps are mostly the links' burstiness. */
function everySecond (series: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = []
  for (const s of series) if (out.length === 0 || s[0] - out[out.length - 1][0] >= 1 || s === series.at(-1)) out.push(s)
  return out
}

/** Per-node download rate over time for one trial (the paper's Figures 2–5). */
function rateChart (t: TrialResult): string {
  const series: Series[] = t.nodeResults.map((n, i) => ({
    name: i < 10 ? n.name : '',
    points: ratesFrom(everySecond(n.received).map(([time, bytes]) => ({ t: time, bytes }))).map(([time, r]) => [time, r * 8 / 1e6])
  }))
  return lineChart(series, { title: `${t.label}, N=${t.nodes}: per-node download rate`, xLabel: 'time since first start (s)', yLabel: 'Mbit/s (link counters)', height: 320 })
}

function svgName (id: string, transport: string): string {
  return `${id}-${transport}.svg`.replace(/[^A-Za-z0-9._-]/g, '_')
}

/** Each transport's T on the root-like image next to its T on the one-file image at the same N: what extracting many files adds. */
function rootlikeComparison (scenarios: ScenarioResult[]): string[] {
  const rows: string[] = []
  for (const r of scenarios.filter(s => s.group === 'rootlike')) {
    const oneFile = scenarios.find(s => s.group === 'scale' && s.nodes === r.nodes)
    for (const t of r.trials) {
      const o = oneFile?.trials.find(x => x.transport === t.transport)
      const cell = (x: TrialResult | undefined): string => x?.T == null ? '—' : `${n2(x.T, 1)} (${n2(x.T / x.tStar)})`
      rows.push(`| ${t.label} | ${r.nodes} | ${cell(o)} | ${cell(t)} | ${n2((t.clientCpuSeconds ?? NaN) / t.nodes)} |`)
    }
  }
  if (rows.length === 0) return []
  return ['## Root-like image against the one-file image', '', 'T in seconds (T/T*) at the same links and piece size; the root-like image is smaller, so compare T/T*.', '',
    '| transport | N | one-file image | root-like image | client CPU s per node, root-like |', '|---|---|---|---|---|', ...rows, '']
}

/** Groups whose bt trials get a timeline: the clean, simultaneous starts. */
const TIMELINE_GROUPS = new Set(['scale', 'rootlike'])
/** Smaller swarms say little about the tail. */
const TIMELINE_MIN_NODES = 4

/** Where the seconds of one bt trial went (timeline.ts): the server's link, then every node, last done first. */
function timelineSection (s: ScenarioResult, t: TrialResult): string[] {
  const mbit = (rate: number): number => rate * 1e6 / 8
  const tl = trialTimeline(t, { serverBytesPerSecond: mbit(s.rateMbit), nodeBytesPerSecond: name => mbit(t.nodeResults.find(n => n.name === name)?.rateMbit ?? s.rateMbit) })
  if (tl === undefined) return []
  const sv = tl.server
  const rows = [...tl.nodes].sort((a, b) => b.done - a.done).map(n =>
    `| ${n.name} | ${n2(n.start)} | ${n2(n.firstByte)} | ${n2(n.busySeconds)} | ${n2(n.unusedWhileServerSent)} | ${n2(n.unusedAfterServer)} | ${n2(n.lastByte)} | ${n2(n.finish)} | ${n2(n.done)} | ${n2(n.fromServer)} | ${n2(n.behindEarly)} | ${n2(n.behindLate)} | ${n.uplinkBusy === undefined ? '—' : `${Math.round(n.uplinkBusy * 100)} %`} | ${n.lastPiece === undefined ? '—' : `${n2(n.lastPiece.at)} s from ${n.lastPiece.from.join(', ')}`} |`)
  return [`### Where the seconds went: ${t.label}, N=${t.nodes}`, '',
    `Link counters every ${tl.sampleSeconds} s. The server's link carried its first bytes at ${n2(sv.firstByte)} s and its last at ${n2(sv.lastByte)} s; ` +
    `its bytes needed ${n2(sv.busySeconds)} s at the link's rate, and ${n2(sv.unusedSeconds)} s of link time went unused in between. ` +
    `T* = ${n2(t.tStar)} s. For each node: first byte (start-up) + busy (its bytes at its link's rate: the image, headers, duplicates) + unused download time while the server sent and after its last byte = its last byte; + finish (last checks, extraction) = done. Behind the server: how many seconds after the server's link the node's link reached the same share (10 %, 99 %) of its bytes, each of its own total: the lag built in the ramp, and the lag it drained at the end. Uplink busy: the share of its uplink in use (its relays) from its first byte to the server's last. Last piece: when the node's last piece passed its check, and who sent its blocks.`, '',
    '| node | start | first byte | busy | unused while server sent | unused after server | last byte | finish | done | from server / F | behind at 10 % | behind at 99 % | uplink busy | last piece |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|', ...rows, '']
}

export async function writeReport (outDir: string, run: RunResult): Promise<string[]> {
  const figDir = join(outDir, 'figures')
  await mkdir(figDir, { recursive: true })
  const written: string[] = []
  const save = async (name: string, svg: string): Promise<string> => {
    await writeFile(join(figDir, name), svg)
    written.push(join(figDir, name))
    return `figures/${name}`
  }

  const md: string[] = []
  md.push(`# Benchmark report (${run.plan})`, '')
  md.push(`Generated by \`scripts/bench/run.ts\` on ${run.startedAt}: ${run.host.cpus} CPUs, kernel ${run.host.kernel}${run.host.tcpCongestion !== undefined ? `, TCP congestion control ${run.host.tcpCongestion} on every host` : ''}` +
    (run.source !== undefined ? `, code at commit ${run.source.commit}${run.source.dirtySrcFiles > 0 ? ` with ${run.source.dirtySrcFiles} files under src/ changed` : ''} (${run.source.agentBin}, ${run.source.serverBin}). ` : '. ') +
    (run.rerun !== undefined ? `This run re-ran only ${run.rerun.join('; ')} (\`--merge\`): the other results were kept from earlier runs into the same directory, and the source above is this run's. ` : '') +
    `Image ${round(run.imageBytes / MB, 1)} MB (tarball), piece ${run.pieceLength / 1024} KiB; links ${run.rateMbit} Mbit/s each way unless a scenario says otherwise. ` +
    'T: seconds from the first node\'s start until the slowest node holds the verified, extracted image. ' +
    'T*: the fluid lower bound of DESIGN.md at the raw link rates (TCP/IP headers alone make about 1.05 the best reachable T/T*); with staggered starts, also no earlier than the last node\'s start plus its own download time. ' +
    'Server bytes: everything the server host sent, from its link\'s interface counters, headers included. ' +
    'Machine CPU: busy share of all cores over the trial (mean) and in the busiest second (peak), other users of the machine included; client CPU: CPU seconds of each node\'s client process tree, averaged over the nodes.', '')

  const rootlike = run.scenarios.find(s => s.image?.kind === 'rootlike')?.image
  if (rootlike !== undefined) {
    md.push(`The root-like image's scenarios deploy instead a tree shaped like a root file system, scaled down (scripts/bench/rootlike-image.ts): ${round(rootlike.bytes / MB, 1)} MB, ${rootlike.entries} entries, most of them small files; there T counts extracting them too.`, '')
  }
  const targets = checkTargets(run.scenarios, run.raw)
  if (targets.length > 0) {
    md.push('## Targets', '', '| target | measured | goal | met |', '|---|---|---|---|')
    for (const t of targets) md.push(`| ${t.target} | ${t.measured} | ${t.goal} | ${t.met === undefined ? '—' : t.met ? 'yes' : 'no'} |`)
  }
  md.push('', 'Each change made to the swarm while tuning it, with its measured effect: [docs/BENCHMARKS.md, Tuning](../docs/BENCHMARKS.md#tuning).', '')
  const scale = run.scenarios.filter(s => s.group === 'scale')
  if (scale.length > 0) {
    md.push('## Deployment time against N', '')
    md.push(`![T against N](${await save('time-vs-n.svg', timeVsNChart(scale))})`, '')
    md.push(`![T/T* against N](${await save('ratio-vs-n.svg', ratioVsNChart(scale))})`, '')
  }
  md.push(...rootlikeComparison(run.scenarios))
  for (const s of run.scenarios) {
    md.push(`## ${s.title}`, '', TRIAL_HEADER)
    for (const t of s.trials) md.push(trialRow(t))
    md.push('')
    const notes = s.trials.flatMap(t => [
      ...t.notes.map(n => `${t.label}: ${n}`),
      ...lateStartNote(t),
      ...t.nodeResults.filter(n => !n.ok).slice(0, 3).map(n => `${t.label}: ${n.name}: ${n.error ?? 'not verified'}${n.warnings !== undefined ? ` (its last warnings: ${n.warnings.slice(-3).join('; ')})` : ''}`)
    ])
    if (notes.length > 0) md.push(...notes.map(n => `- ${n}`), '')
    if (TIMELINE_GROUPS.has(s.group) && s.nodes >= TIMELINE_MIN_NODES) {
      for (const t of s.trials.filter(x => x.transport === 'bt')) md.push(...timelineSection(s, t))
    }
    const bigScale = s.group === 'scale' && s.nodes === Math.max(...scale.map(x => x.nodes))
    if (bigScale || s.group !== 'scale') {
      for (const t of s.trials) {
        if (t.nodeResults.every(n => n.received.length < 2)) continue
        md.push(`![${t.label}](${await save(svgName(s.id, t.transport), rateChart(t))})`)
      }
      md.push('')
    }
  }
  if (run.raw !== undefined && run.raw.length > 0) {
    md.push('## Raw speed over unshaped loopback', '', '| client | image | download (s) | MB/s | with extraction (s) | CPU mean |', '|---|---|---|---|---|---|')
    for (const r of run.raw) {
      md.push(`| ${r.label} | ${round(r.bytes / MB, 0)} MB | ${n2(r.downloadSeconds, 1)} | ${n2(r.bytes / MB / r.downloadSeconds, 1)} | ${n2(r.totalSeconds, 1)} | ${pct(r.cpuMean)} |`)
    }
    md.push('')
  }
  md.push('## Cleanup', '', run.cleanup.namespacesLeft.length === 0 ? 'Every namespace the run created was removed.' : `Namespaces left behind: ${run.cleanup.namespacesLeft.join(', ')}`, '')
  await writeFile(join(outDir, 'REPORT.md'), md.join('\n'))
  written.push(join(outDir, 'REPORT.md'))
  return written
}
