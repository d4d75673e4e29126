// Figures computed from what the harness observed: CPU use of the whole machine from
// /proc/stat, the fluid lower bound T*, per-node rates from link counters.
import { readFileSync, readdirSync } from 'node:fs'
import type { LinkSpec } from './shaping.ts'

export interface CpuSample { busy: number; total: number }

/** Jiffies since boot, all cores: busy is everything but idle and iowait. */
export function readCpu (): CpuSample {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
  const idle = v[3] + v[4]
  return { busy: total - idle, total }
}

const CLOCK_TICKS_PER_SECOND = 100

interface ProcStat { ppid: number; cpu: number }

function readProcStat (pid: string): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which is in parentheses and may hold spaces.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // utime, stime, and the children it has already waited for (cutime, cstime).
    return { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLOCK_TICKS_PER_SECOND }
  } catch {
    return undefined
  }
}

/**
 * CPU seconds used so far by each given process together with its live descendants (a
 * shell running aria2c then tar; an agent running udp-receiver). Gone processes are absent.
 */
export function treeCpuSeconds (roots: number[]): Map<number, number> {
  const stats = new Map<number, ProcStat>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const st = readProcStat(name)
    if (st !== undefined) stats.set(Number(name), st)
  }
  const children = new Map<number, number[]>()
  for (const [pid, st] of stats) children.set(st.ppid, [...(children.get(st.ppid) ?? []), pid])
  const result = new Map<number, number>()
  for (const root of roots) {
    if (!stats.has(root)) continue
    let total = 0
    const stack = [root]
    while (stack.length > 0) {
      const pid = stack.pop()!
      total += stats.get(pid)?.cpu ?? 0
      stack.push(...(children.get(pid) ?? []))
    }
    result.set(root, total)
  }
  return result
}

/** Fraction (0..1) of all cores busy between two samples. */
export function cpuBetween (a: CpuSample, b: CpuSample): number {
  const total = b.total - a.total
  return total <= 0 ? 0 : (b.busy - a.busy) / total
}

export function bytesPerSecond (link: LinkSpec): number {
  return link.rateMbit * 1e6 / 8
}

/**
 * Kumar & Ross's fluid bound for F bytes from one seed of upload U_s to peers of
 * uploads μ_i and downloads d_i: max{F/U_s, F/min d_i, N·F/(U_s + Σμ_i)}. With staggered
 * starts, no node can finish before its start plus F/d_i either: T counts from the first
 * start, so a node starting 15 s late bounds T by 15 s + F/d_i, whatever the swarm does.
 */
export function fluidBound (bytes: number, server: LinkSpec, nodes: LinkSpec[], startSeconds: (i: number) => number = () => 0): number {
  const us = bytesPerSecond(server)
  const sumUp = nodes.reduce((a, l) => a + bytesPerSecond(l), 0)
  const latestFinish = Math.max(...nodes.map((l, i) => startSeconds(i) + bytes / bytesPerSecond(l)))
  return Math.max(bytes / us, latestFinish, nodes.length * bytes / (us + sumUp))
}

/** Unicast lower bound: the server's link carries every copy. */
export function unicastBound (bytes: number, server: LinkSpec, nodes: LinkSpec[]): number {
  return Math.max(nodes.length * bytes / bytesPerSecond(server), bytes / Math.min(...nodes.map(bytesPerSecond)))
}

/** Rate between successive cumulative samples: [t, bytes/s] at each sample after the first. */
export function ratesFrom (samples: Array<{ t: number; bytes: number }>): Array<[number, number]> {
  const out: Array<[number, number]> = []
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i].t - samples[i - 1].t
    if (dt > 0) out.push([round(samples[i].t, 2), Math.round((samples[i].bytes - samples[i - 1].bytes) / dt)])
  }
  return out
}

export function round (x: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

export function percentile (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}

/** Share of the image the server must have sent for its transfer to count as begun. */
export const TRANSFER_BEGUN_FRACTION = 0.01
/**
 * A transfer that begins later than this after the first client started began late:
 * every transport's start-up takes up to ~3.5 s here (32 processes starting on 2 cores),
 * udpcast's repeated negotiation after a lost first exchange 10 s and more.
 */
export const LATE_START_SECONDS = 8

/**
 * When the server's transfer began late (udpcast's lost first exchange), the second it
 * did; otherwise undefined. Such a trial times its transport's negotiation, not its
 * transfer. Staggered starts are exempt: there udpcast waits for its last receiver by design.
 */
export function lateStartSeconds (trial: { serverSent: Array<[number, number]>; imageBytes: number; staggerSeconds: number }): number | undefined {
  if (trial.staggerSeconds > 0) return undefined
  const begun = trial.serverSent.find(([, bytes]) => bytes >= trial.imageBytes * TRANSFER_BEGUN_FRACTION)
  return begun !== undefined && begun[0] > LATE_START_SECONDS ? begun[0] : undefined
}
