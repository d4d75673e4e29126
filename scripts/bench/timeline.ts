// Where a trial's seconds went, from its link samples: how long the server's link was busy
// and when it sent its last byte, and for each node how its time splits into start-up
// (until its first byte), its downlink's busy time (what it received, at its raw rate),
// the download time it left unused while the server was still sending and after the
// server's last byte, and the time from its own last byte to holding the extracted image.
// Those parts add up to the node's finishing time (up to the sampling step), so the
// slowest node's row says where T - T* went.
import type { TrialResult } from './trial.ts'
import { round } from './metrics.ts'

/** A sample whose bytes are less than this share of its link's rate marks no first or last byte (haves and requests go on). */
const IDLE_SHARE = 0.1
/**
 * Shares of the bytes at which a node's lag behind the server is read: early (the ramp,
 * before pieces can be relayed) and at the end (what the node still had to drain).
 */
const BEHIND_EARLY_SHARE = 0.1
const BEHIND_LATE_SHARE = 0.99

export interface ServerTimeline {
  /** start of the first and end of the last sample in which the server's link moved at least IDLE_SHARE of its rate */
  firstByte: number
  lastByte: number
  /** seconds of link time its bytes needed at the raw rate (headers included) */
  busySeconds: number
  /** between its first and last byte, link time left unused */
  unusedSeconds: number
}

export interface NodeTimeline {
  name: string
  start: number
  /** start of the first and end of the last sample in which its link carried bytes in (IDLE_SHARE of its rate) */
  firstByte: number
  lastByte: number
  /** when it held the verified, extracted image */
  done: number
  /** what it received up to its last byte (headers, duplicates, control) at its raw rate */
  busySeconds: number
  /** from its first byte to the server's last byte, download time left unused */
  unusedWhileServerSent: number
  /** from the server's last byte to its own last byte, download time left unused */
  unusedAfterServer: number
  /** from its last byte to holding the extracted image (the last pieces' checks, extraction) */
  finish: number
  /** share of the image it got from the server (the agent's own count) */
  fromServer?: number
  /** when its last piece passed its check, and who sent that piece (the agent's own record) */
  lastPiece?: { at: number; from: string[] }
  /**
   * Seconds its link took longer than the server's to reach the same share of its bytes
   * (each of its own total), at BEHIND_EARLY_SHARE and BEHIND_LATE_SHARE: how far the
   * node's data trailed the server's, in the ramp and at the end.
   */
  behindEarly: number
  behindLate: number
  /** from its first byte to the server's last byte, the share of its uplink in use (its relays); undefined without uplink samples */
  uplinkBusy?: number
}

export interface TrialTimeline {
  sampleSeconds: number
  server: ServerTimeline
  nodes: NodeTimeline[]
}

/** Start of the first sample interval over which the cumulative series grew by at least `bytes`, or undefined. */
function firstGrowth (series: Array<[number, number]>, bytes: number): number | undefined {
  for (let i = 1; i < series.length; i++) if (series[i][1] - series[i - 1][1] >= bytes) return series[i - 1][0]
  return undefined
}

/** The time of the last sample whose cumulative bytes grew by at least `minBytes`. */
function lastGrowth (series: Array<[number, number]>, minBytes: number): number | undefined {
  for (let i = series.length - 1; i > 0; i--) if (series[i][1] - series[i - 1][1] >= minBytes) return series[i][0]
  return undefined
}

/**
 * Link time left unused between two times: for each sample, its share of the interval less
 * the time its bytes needed at the link's rate (never below zero).
 */
function unusedBetween (series: Array<[number, number]>, from: number, to: number, bytesPerSecond: number): number {
  let unused = 0
  for (let i = 1; i < series.length; i++) {
    const [t0, b0] = series[i - 1]
    const [t1, b1] = series[i]
    const overlap = Math.min(t1, to) - Math.max(t0, from)
    if (overlap <= 0 || t1 <= t0) continue
    const share = overlap / (t1 - t0)
    unused += Math.max(0, overlap - share * (b1 - b0) / bytesPerSecond)
  }
  return unused
}

/** When a cumulative series reached `bytes`, interpolated within its sample. */
function timeReaching (series: Array<[number, number]>, bytes: number): number {
  for (let i = 1; i < series.length; i++) {
    const [t0, b0] = series[i - 1]
    const [t1, b1] = series[i]
    if (b1 >= bytes) return b1 === b0 ? t0 : t0 + (t1 - t0) * (bytes - b0) / (b1 - b0)
  }
  return series.at(-1)?.[0] ?? 0
}

/** Seconds the node's series took longer than the server's to reach `share` of its own total. */
function behind (node: Array<[number, number]>, server: Array<[number, number]>, share: number): number {
  return timeReaching(node, share * (node.at(-1)?.[1] ?? 0)) - timeReaching(server, share * (server.at(-1)?.[1] ?? 0))
}

/** Share of a link's time in use between two times. */
function busyShare (series: Array<[number, number]>, from: number, to: number, bytesPerSecond: number): number | undefined {
  if (series.length < 2 || to <= from) return undefined
  return 1 - unusedBetween(series, from, to, bytesPerSecond) / (to - from)
}

export function trialTimeline (trial: TrialResult, rates: { serverBytesPerSecond: number; nodeBytesPerSecond: (name: string) => number }): TrialTimeline | undefined {
  const sent = trial.serverSent
  if (sent.length < 3 || trial.T === null) return undefined
  const sampleSeconds = round((sent.at(-1)![0] - sent[0][0]) / (sent.length - 1), 3)
  const serverRate = rates.serverBytesPerSecond
  const serverStep = IDLE_SHARE * serverRate * sampleSeconds
  const serverFirst = firstGrowth(sent, serverStep) ?? 0
  const serverLast = lastGrowth(sent, serverStep) ?? serverFirst
  const server: ServerTimeline = {
    firstByte: serverFirst,
    lastByte: serverLast,
    busySeconds: round(sent.at(-1)![1] / serverRate, 2),
    unusedSeconds: round(unusedBetween(sent, serverFirst, serverLast, serverRate), 2)
  }
  const nodes = trial.nodeResults.map(n => {
    const rate = rates.nodeBytesPerSecond(n.name)
    const got = n.received
    const step = IDLE_SHARE * rate * sampleSeconds
    const firstByte = firstGrowth(got, step) ?? n.startedAt
    const lastByte = lastGrowth(got, step) ?? firstByte
    const done = n.verifiedAt ?? trial.T!
    // Bytes up to its last byte only: a finished node keeps receiving requests and haves.
    const upToLast = got.filter(([t]) => t <= lastByte).at(-1)?.[1] ?? 0
    const serverEnd = Math.min(server.lastByte, lastByte)
    return {
      name: n.name,
      start: n.startedAt,
      firstByte,
      lastByte,
      done,
      busySeconds: round(upToLast / rate, 2),
      unusedWhileServerSent: round(unusedBetween(got, firstByte, serverEnd, rate), 2),
      unusedAfterServer: round(unusedBetween(got, serverEnd, lastByte, rate), 2),
      finish: round(Math.max(0, done - lastByte), 2),
      fromServer: n.downloadedFromServer === undefined ? undefined : round(n.downloadedFromServer / trial.imageBytes, 3),
      lastPiece: n.lastPiece,
      behindEarly: round(behind(got, sent, BEHIND_EARLY_SHARE), 2),
      behindLate: round(behind(got, sent, BEHIND_LATE_SHARE), 2),
      uplinkBusy: n.sent === undefined ? undefined : round(busyShare(n.sent, firstByte, serverEnd, rate) ?? 0, 3)
    }
  })
  return { sampleSeconds, server, nodes }
}
