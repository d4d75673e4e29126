// What `make bench` and `make bench-smoke` measure. A scenario is one cluster (node count,
// links, start pattern) and the transports run on it one after another.
import { autoTransport, btTransport, httpTransport } from './transports/agent.ts'
import { aria2Transport } from './transports/aria2.ts'
import { multicastTransport } from './transports/multicast.ts'
import { rsyncTransport } from './transports/rsync.ts'
import type { Transport } from './transports/types.ts'
import type { LinkSpec } from './shaping.ts'
import { bytesPerSecond } from './metrics.ts'

export const MIB = 1024 * 1024

export interface Scenario {
  id: string
  /** scale | hetero | loss | stagger | leave */
  group: string
  title: string
  nodes: number
  server: LinkSpec
  /** link of node i (0-based) */
  nodeLink: (i: number) => LinkSpec
  staggerSeconds: number
  transports: Transport[]
  /** when node i starts, in seconds (default: i · staggerSeconds) */
  startAt?: (i: number) => number
  /** torrent piece size for this scenario, when it differs from the plan's */
  pieceLength?: number
  /** which image: the plan's one-file image (default) or the root-like tree (rootlike-image.ts) */
  image?: ImageKind
}

export type ImageKind = 'one-file' | 'rootlike'

export interface Plan {
  name: string
  imageBytes: number
  /** torrent piece size, or undefined for si-server's choice by image size */
  pieceLength?: number
  rateMbit: number
  scenarios: Scenario[]
  /** the 1 GiB loopback race (bytes), or 0 to skip */
  rawBytes: number
}

export interface PlanOptions {
  rateMbit: number
  imageMib: number
  pieceKib?: number
  sizes: number[]
  /** largest N at which HTTP unicast runs, and rsync: their T grows as N (at least N·F/U_s) */
  unicastMaxNodes: number
  rsyncMaxNodes: number
  staggerSeconds: number
  rawMib: number
  /** node counts of the root-like image's scenarios */
  rootlikeSizes: number[]
}

/** Heterogeneous links: every second node at a quarter of the rate. */
export const SLOW_FRACTION = 0.25
export const LOSS = 0.01
/**
 * The largest N again with links at a quarter of the rate, at a quarter of the CPU load:
 * on this 2-core machine N=32 agents at the full rate saturate the CPU, and such a run
 * measures the CPU rather than the protocol (DESIGN.md).
 */
export const CPU_FAIR_SCALE = 0.25
/**
 * ... with pieces half the scale trials' size. A quarter would keep the time per piece on
 * the wire, but at 128 KiB pieces that is 32 KiB, measured slower (79.7-81.4 s against
 * 76.9-77.4 s) and over the server-bytes budget (1.22-1.25 F) against 64 KiB, the size
 * this trial had in every report before (docs/BENCHMARKS.md, Tuning row 21).
 */
export const CPU_FAIR_PIECE_SCALE = 0.5
/** The leave-policy scenario's server link, as a share of the nodes' rate. */
export const LEAVE_SERVER_SCALE = 0.25
/**
 * Its second wave starts this many times F/U_s (the first wave's bound) after the first:
 * while the first is finishing, when leaving or staying decides where the second's pieces
 * come from.
 */
export const LEAVE_WAVE_GAP_TSTAR = 0.9

function allTransports (n: number, o: PlanOptions): Transport[] {
  const t = [btTransport(), multicastTransport(), aria2Transport()]
  if (n <= o.unicastMaxNodes) t.push(httpTransport())
  if (n <= o.rsyncMaxNodes) t.push(rsyncTransport())
  if (n === 1) t.push(autoTransport())
  return t
}

/** What unpacks a root-like image on a node: our agent (bt, udpcast), GNU tar after aria2c, and at N=1 HTTP. */
function rootlikeTransports (n: number, o: PlanOptions): Transport[] {
  const t = [btTransport(), multicastTransport(), aria2Transport()]
  if (n === 1 && o.unicastMaxNodes >= 1) t.push(httpTransport())
  return t
}

export function fullPlan (o: PlanOptions): Plan {
  const link: LinkSpec = { rateMbit: o.rateMbit }
  const uniform = (): LinkSpec => link
  const mid = o.sizes.filter(n => n <= 16).at(-1) ?? o.sizes[0]
  const big = o.sizes.at(-1) ?? 1
  const scenarios: Scenario[] = o.sizes.map(n => ({
    id: `scale-n${n}`, group: 'scale', title: `N=${n}, ${o.rateMbit} Mbit/s links`, nodes: n, server: link, nodeLink: uniform, staggerSeconds: 0,
    transports: allTransports(n, o)
  }))
  // The same links and pieces with the root-like image: T then counts extracting thousands
  // of small files, as on a cluster, besides the transfer.
  for (const n of o.rootlikeSizes) {
    scenarios.push({
      id: `rootlike-n${n}`, group: 'rootlike', title: `root-like image, N=${n}, ${o.rateMbit} Mbit/s links`, nodes: n, server: link, nodeLink: uniform,
      staggerSeconds: 0, image: 'rootlike', transports: rootlikeTransports(n, o)
    })
  }
  scenarios.push({
    id: `hetero-n${mid}`, group: 'hetero', title: `N=${mid}, every second node at ${SLOW_FRACTION * o.rateMbit} Mbit/s`, nodes: mid, server: link,
    nodeLink: i => (i % 2 === 1 ? { rateMbit: o.rateMbit * SLOW_FRACTION } : link), staggerSeconds: 0,
    transports: [btTransport(), multicastTransport(), aria2Transport()]
  })
  scenarios.push({
    id: `loss-n${mid}`, group: 'loss', title: `N=${mid}, ${LOSS * 100}% packet loss on every link`, nodes: mid, server: { ...link, loss: LOSS },
    nodeLink: () => ({ ...link, loss: LOSS }), staggerSeconds: 0,
    transports: [btTransport(), multicastTransport(), aria2Transport()]
  })
  scenarios.push({
    id: `stagger-n${mid}`, group: 'stagger', title: `N=${mid}, one node starting every ${o.staggerSeconds} s`, nodes: mid, server: link, nodeLink: uniform,
    staggerSeconds: o.staggerSeconds, transports: [btTransport(), multicastTransport(), aria2Transport()]
  })
  // The largest N again with links at a quarter of the rate and pieces half the size.
  const slow: LinkSpec = { rateMbit: o.rateMbit * CPU_FAIR_SCALE }
  const fairPieceKib = o.pieceKib === undefined ? undefined : Math.max(16, o.pieceKib * CPU_FAIR_PIECE_SCALE)
  const fairTitle = `${slow.rateMbit} Mbit/s links${fairPieceKib === undefined ? '' : `, ${fairPieceKib} KiB pieces`}`
  const fairPiece = fairPieceKib === undefined ? undefined : fairPieceKib * 1024
  scenarios.push({
    id: `cpufair-n${big}`, group: 'cpufair', title: `N=${big}, ${fairTitle} (a quarter of the CPU load)`, nodes: big, server: slow, nodeLink: () => slow,
    staggerSeconds: 0, pieceLength: fairPiece, transports: [btTransport(), multicastTransport(), aria2Transport()]
  })
  // Leaving matters only when the nodes that stay are worth more than the server: with a
  // server link as fast as every node's (the other trials), the server alone feeds a late
  // wave at its full download rate, and the three policies measured within 0.6 % of one
  // another (docs/BENCHMARKS.md). So here the server has a quarter of the nodes' rate, as
  // when one server installs several groups at once. Half the nodes start at once, the
  // other half shortly before the first are done; the first wave then either leaves as it
  // finishes (none), while its upload stays above the threshold (upload-min), or while the
  // tracker still counts leechers (swarm). At most half the nodes download at a time, so
  // the CPU is not saturated at the full rate.
  const slowServer: LinkSpec = { rateMbit: o.rateMbit * LEAVE_SERVER_SCALE }
  const waveGap = Math.ceil(LEAVE_WAVE_GAP_TSTAR * o.imageMib * MIB / bytesPerSecond(slowServer))
  const firstWave = Math.ceil(big / 2)
  scenarios.push({
    id: `leave-n${big}`, group: 'leave', title: `N=${big}, ${o.rateMbit} Mbit/s links, the server's at ${slowServer.rateMbit} Mbit/s, in two waves: ${firstWave} nodes at 0 s, ${big - firstWave} at ${waveGap} s, leave policies`,
    nodes: big, server: slowServer, nodeLink: uniform, staggerSeconds: 0, startAt: i => (i < firstWave ? 0 : waveGap),
    transports: [btTransport('none', 'bt-leave-none'), btTransport('upload-min=50', 'bt-leave-upload-min'), btTransport('swarm', 'bt-leave-swarm')]
  })
  return { name: 'full', imageBytes: o.imageMib * MIB, pieceLength: o.pieceKib === undefined ? undefined : o.pieceKib * 1024, rateMbit: o.rateMbit, scenarios, rawBytes: o.rawMib * MIB }
}

/** The harness checked end to end in well under a minute: N=4, a small image, shaped links. */
export function smokePlan (): Plan {
  const link: LinkSpec = { rateMbit: 40 }
  return {
    name: 'smoke',
    imageBytes: 4 * MIB,
    // 16 pieces rather than si-server's 4 of 1 MiB: enough for the swarm to swarm.
    pieceLength: 256 * 1024,
    rateMbit: 40,
    rawBytes: 0,
    scenarios: [{
      id: 'scale-n4', group: 'scale', title: 'smoke: N=4, 40 Mbit/s links', nodes: 4, server: link, nodeLink: () => link, staggerSeconds: 0,
      transports: [btTransport(), httpTransport()]
    }]
  }
}
