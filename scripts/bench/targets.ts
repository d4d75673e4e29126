// The issue's targets, checked against one run's results: each with the measured value,
// the goal and whether it is met (or why it cannot be judged).
import type { ScenarioResult } from './report.ts'
import type { RawResult } from './raw.ts'
import type { TrialResult } from './trial.ts'
import { lateStartSeconds } from './metrics.ts'

export interface TargetRow { target: string; measured: string; goal: string; met: boolean | undefined }

const BT = 'bt'

function trial (scenarios: ScenarioResult[], group: string, n: number | undefined, transport: string): TrialResult | undefined {
  const s = scenarios.find(x => x.group === group && (n === undefined || x.nodes === n))
  return s?.trials.find(t => t.transport === transport)
}

function fmt (x: number | undefined | null, digits = 2): string {
  return x === undefined || x === null || !Number.isFinite(x) ? 'not measured' : x.toFixed(digits)
}

function ratio (a: TrialResult | undefined, b: TrialResult | undefined): number | undefined {
  return a?.T == null || b?.T == null ? undefined : a.T / b.T
}

function row (target: string, value: number | undefined, goal: string, ok: (v: number) => boolean, digits = 2): TargetRow {
  return { target, measured: fmt(value, digits), goal, met: value === undefined ? undefined : ok(value) }
}

/** A comparison with a trial whose transfer began late cannot be judged: it says so. */
function against (r: TargetRow, other: TrialResult | undefined): TargetRow {
  const late = other === undefined ? undefined : lateStartSeconds(other)
  if (late === undefined) return r
  return { ...r, measured: `${r.measured} (${other!.transport} began sending only at ${late.toFixed(1)} s)`, met: undefined }
}

/** The targets judged on the scale trials (one-file image, all nodes at once). */
function scaleTargets (scenarios: ScenarioResult[]): TargetRow[] {
  const rows: TargetRow[] = []
  const scale = scenarios.filter(s => s.group === 'scale')
  const sizes = scale.map(s => s.nodes)
  const big = Math.max(...sizes)
  for (const n of [8, 16, 32].filter(x => sizes.includes(x))) {
    const t = trial(scenarios, 'scale', n, BT)
    rows.push(row(`T_bt / T* at N=${n}`, t?.T == null ? undefined : t.T / t.tStar, '<= 1.10', v => v <= 1.10))
  }
  if (sizes.includes(4)) rows.push(row(`T_bt(${big}) / T_bt(4)`, ratio(trial(scenarios, 'scale', big, BT), trial(scenarios, 'scale', 4, BT)), '<= 1.05', v => v <= 1.05))
  const bigBt = trial(scenarios, 'scale', big, BT)
  rows.push(row(`server bytes / F at N=${big}`, bigBt === undefined ? undefined : bigBt.serverBytes / bigBt.imageBytes, '<= 1.2', v => v <= 1.2))
  for (const other of ['http', 'rsync']) {
    const from2 = scale.filter(s => s.nodes >= 2).map(s => ratio(s.trials.find(t => t.transport === other), s.trials.find(t => t.transport === BT))).filter((x): x is number => x !== undefined)
    rows.push(row(`T_${other} / T_bt, worst over N>=2 measured`, from2.length > 0 ? Math.min(...from2) : undefined, '> 1', v => v > 1))
    const measured = ratio(trial(scenarios, 'scale', big, other), bigBt)
    if (measured === undefined && bigBt?.T != null) {
      // Not run at this N: no unicast transport beats N·F/U_s, which bounds the ratio from below.
      const bound = bigBt.tUnicast / bigBt.T
      rows.push({ target: `T_${other} / T_bt at N=${big}`, measured: `>= ${bound.toFixed(1)} (unicast bound N·F/U_s, not run)`, goal: '>= 25', met: bound >= 25 ? true : undefined })
    } else {
      rows.push(row(`T_${other} / T_bt at N=${big}`, measured, '>= 25', v => v >= 25, 1))
    }
  }
  // The worst case over N leaves out trials whose udpcast began late: they time its negotiation.
  const clean = scale.flatMap(s => {
    const udp = s.trials.find(t => t.transport === 'multicast')
    if (udp === undefined || lateStartSeconds(udp) !== undefined) return []
    const r = ratio(s.trials.find(t => t.transport === BT), udp)
    return r === undefined ? [] : [r]
  })
  rows.push(row('T_bt / T_udpcast, clean links, worst over N (udpcast on time)', clean.length > 0 ? Math.max(...clean) : undefined, '<= 1.1', v => v <= 1.1))
  const bigUdp = trial(scenarios, 'scale', big, 'multicast')
  rows.push(against(row(`T_bt / T_udpcast, clean links, N=${big}`, ratio(bigBt, bigUdp), '<= 1.1', v => v <= 1.1), bigUdp))
  rows.push(row(`T_bt / T_aria2c at N=${big}`, ratio(bigBt, trial(scenarios, 'scale', big, 'aria2')), '<= 0.9', v => v <= 0.9))
  return rows
}

export function checkTargets (scenarios: ScenarioResult[], raw: RawResult[] | undefined): TargetRow[] {
  const rows: TargetRow[] = []
  // A run without the scale trials (--only) judges none of their targets.
  if (scenarios.some(s => s.group === 'scale')) rows.push(...scaleTargets(scenarios))
  if (scenarios.some(s => s.group === 'loss')) {
    const lossUdp = trial(scenarios, 'loss', undefined, 'multicast')
    rows.push(against(row('T_bt / T_udpcast, 1% loss', ratio(trial(scenarios, 'loss', undefined, BT), lossUdp), '< 1', v => v < 1), lossUdp))
  }
  // The same N with the CPU out of the way (links at a quarter, pieces at half): what the protocol does.
  const fair = scenarios.find(s => s.group === 'cpufair')
  const fairBt = fair?.trials.find(t => t.transport === BT)
  if (fair !== undefined) {
    rows.push(row(`T_bt / T* at N=${fair.nodes}, CPU not saturated (${fair.rateMbit} Mbit/s)`, fairBt?.T == null ? undefined : fairBt.T / fairBt.tStar, '<= 1.10', v => v <= 1.10))
    rows.push(row(`server bytes / F at N=${fair.nodes}, CPU not saturated`, fairBt === undefined ? undefined : fairBt.serverBytes / fairBt.imageBytes, '<= 1.2', v => v <= 1.2))
    const fairUdp = fair.trials.find(t => t.transport === 'multicast')
    rows.push(against(row(`T_bt / T_udpcast at N=${fair.nodes}, CPU not saturated`, ratio(fairBt, fairUdp), '<= 1.1', v => v <= 1.1), fairUdp))
    rows.push(row(`T_bt / T_aria2c at N=${fair.nodes}, CPU not saturated`, ratio(fairBt, fair.trials.find(t => t.transport === 'aria2')), '<= 0.9', v => v <= 0.9))
  }
  const rawBt = raw?.find(r => r.label.includes('--transport bt'))
  const rawAria = raw?.find(r => r.label.startsWith('aria2c'))
  const rate = (r: RawResult | undefined): number | undefined => r === undefined || r.error !== undefined ? undefined : r.bytes / r.downloadSeconds
  const rb = rate(rawBt)
  const ra = rate(rawAria)
  if (raw !== undefined) rows.push(row('raw loopback MB/s, agent / aria2c', rb !== undefined && ra !== undefined ? rb / ra : undefined, '>= 1', v => v >= 1))
  const leave = scenarios.find(s => s.group === 'leave')
  if (leave !== undefined) {
    const byT = leave.trials.filter(t => t.T !== null).sort((a, b) => (a.T as number) - (b.T as number))
    const best = byT[0]?.transport
    rows.push({ target: 'lowest T among leave policies', measured: best === undefined ? 'not measured' : `${best.replace('bt-leave-', '')} (${byT.map(t => `${t.transport.replace('bt-leave-', '')} ${fmt(t.T, 1)} s`).join(', ')})`, goal: 'swarm', met: best === undefined ? undefined : best === 'bt-leave-swarm' })
  }
  return rows
}
