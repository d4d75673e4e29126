// The benchmark harness checked end to end on a small cluster: namespaces made and
// removed, links shaped, every node verified, results and figures written. Needs root
// and `ip netns`; skipped with the reason otherwise.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fluidBound, lateStartSeconds, LATE_START_SECONDS } from '../scripts/bench/metrics.ts'
import { fullPlan } from '../scripts/bench/plans.ts'
import { LARGE_FILE_BYTES, makeRootlikeImage } from '../scripts/bench/rootlike-image.ts'
import { trialTimeline } from '../scripts/bench/timeline.ts'
import type { TrialResult } from '../scripts/bench/trial.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SMOKE_TIMEOUT_MS = 150_000
/** The smoke plan's links and nodes (scripts/bench/plans.ts smokePlan). */
const NODES = 4
const RATE_BYTES_PER_S = 40e6 / 8
/** Unicast over a shaped link cannot beat the link: a little slack for counting. */
const SHAPING_SLACK = 0.9

function skipReason (): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: the benchmark harness needs network namespaces'
  const ip = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  if (ip.error !== undefined || ip.status !== 0) return `ip netns is unavailable: ${ip.error?.message ?? ip.stderr.trim()}`
  return undefined
}

interface Health { tcpSegmentsOut: number; tcpRetransmitted: number; uploadDrops: number; downloadDrops: number }
interface Trial { transport: string; ok: boolean; T: number | null; imageBytes: number; serverBytes: number; health?: { server: Health; nodes: Health }; nodeResults: Array<{ ok: boolean; received: unknown[] }> }

test('bench smoke: N=4 cluster on shaped links, every transport verified, figures written, namespaces removed', { timeout: SMOKE_TIMEOUT_MS + 10_000 }, t => {
  const reason = skipReason()
  if (reason !== undefined) { t.skip(reason); return }
  const out = mkdtempSync(join(tmpdir(), 'si-bench-smoke-'))
  try {
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/bench/run.ts'), '--plan', 'smoke', '--out', out], {
      cwd: ROOT, encoding: 'utf8', timeout: SMOKE_TIMEOUT_MS, killSignal: 'SIGINT'
    })
    assert.equal(run.status, 0, `run.ts failed (${run.status ?? run.signal}):\n${run.stderr}`)

    const scenario = JSON.parse(readFileSync(join(out, 'results', 'scale-n4.json'), 'utf8')) as { namespaces: string[]; tcpCongestion?: string; trials: Trial[] }
    const runInfo = JSON.parse(readFileSync(join(out, 'results', 'run.json'), 'utf8')) as { host: { tcpCongestion?: string } }
    assert.match(runInfo.host.tcpCongestion ?? '', /^[a-z0-9_]+$/, 'the hosts\' TCP congestion control is recorded')
    assert.equal(scenario.tcpCongestion, runInfo.host.tcpCongestion)
    assert.equal(scenario.namespaces.length, NODES + 2, 'a bridge namespace, a server and 4 nodes')
    const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout
    for (const ns of scenario.namespaces) assert.ok(!left.includes(ns), `namespace ${ns} was left behind`)

    assert.deepEqual(scenario.trials.map(x => x.transport).sort(), ['bt', 'http'])
    for (const trial of scenario.trials) {
      assert.ok(trial.ok && trial.T !== null, `${trial.transport}: not every node verified`)
      assert.equal(trial.nodeResults.length, NODES)
      for (const n of trial.nodeResults) assert.ok(n.ok && n.received.length > 0)
      assert.ok(trial.serverBytes >= trial.imageBytes, `${trial.transport}: the server sent less than one image`)
      // The server's kernel sent at least one TCP segment per full frame of the image.
      assert.ok(trial.health !== undefined && trial.health.server.tcpSegmentsOut >= trial.imageBytes / 1500, `${trial.transport}: server TCP counters ${JSON.stringify(trial.health?.server)}`)
      assert.ok(trial.health.nodes.tcpRetransmitted >= 0 && trial.health.server.uploadDrops >= 0)
    }
    const http = scenario.trials.find(x => x.transport === 'http')!
    const unicastFloor = NODES * http.imageBytes / RATE_BYTES_PER_S
    assert.ok(http.T! >= SHAPING_SLACK * unicastFloor, `HTTP to ${NODES} nodes took ${http.T} s, faster than the shaped server link allows (${unicastFloor.toFixed(1)} s): links are not shaped`)

    const report = readFileSync(join(out, 'REPORT.md'), 'utf8')
    assert.match(report, /\| transport \| N \| T \(s\)/)
    const figures = readdirSync(join(out, 'figures'))
    assert.ok(figures.includes('time-vs-n.svg'), `figures: ${figures.join(', ')}`)
    assert.ok(figures.some(f => f.includes('-bt.svg')) && figures.some(f => f.includes('-http.svg')))
    for (const f of figures) assert.match(readFileSync(join(out, 'figures', f), 'utf8'), /^<svg [^>]*>[\s\S]*<polyline/)
    assert.ok(existsSync(join(out, 'results', 'run.json')))
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test('bench: --help prints the options and runs nothing; an unknown option is refused', () => {
  const run = (args: string[]): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/bench/run.ts'), ...args], { encoding: 'utf8', timeout: 30_000 })
  const help = run(['--help'])
  assert.equal(help.status, 0)
  assert.match(String(help.stdout), /--transports IDS/)
  assert.doesNotMatch(String(help.stderr), /building a cluster|making a/)
  const bad = run(['--sizse', '8'])
  assert.equal(bad.status, 2)
  assert.match(String(bad.stderr), /unknown option --sizse/)
  if (process.getuid?.() === 0) {
    // Checked before anything is built: a misspelt algorithm must not cost a half-hour run.
    const cc = run(['--tcp-cc', 'nosuchcc', '--out', join(tmpdir(), 'si-bench-never')])
    assert.equal(cc.status, 2)
    assert.match(String(cc.stderr), /--tcp-cc nosuchcc: this kernel offers /)
    assert.doesNotMatch(String(cc.stderr), /making a/)
  }
})

test('bench: a transfer that began only after its negotiation was retried counts as a late start', () => {
  const imageBytes = 1_000_000
  const trial = (serverSent: Array<[number, number]>, staggerSeconds = 0): { serverSent: Array<[number, number]>; imageBytes: number; staggerSeconds: number } =>
    ({ serverSent, imageBytes, staggerSeconds })
  const late: Array<[number, number]> = [[0, 0], [2, 100], [LATE_START_SECONDS + 7, 200_000]]
  assert.equal(lateStartSeconds(trial([[0, 0], [1, 5_000], [2, 400_000]])), undefined, 'began at 2 s: on time')
  assert.equal(lateStartSeconds(trial(late)), LATE_START_SECONDS + 7)
  assert.equal(lateStartSeconds(trial([[0, 0], [5, 0]])), undefined, 'never began: not a late start')
  assert.equal(lateStartSeconds(trial(late, 1)), undefined, 'staggered starts: waiting for the last receiver is by design')
})

test('bench: T* of a staggered start is no earlier than the last node\'s start plus its own download', () => {
  const bytes = 10e6 / 8 * 12 // 12 s on a 10 Mbit/s link
  const link = { rateMbit: 10 }
  const nodes = [link, link, link, link]
  assert.equal(fluidBound(bytes, link, nodes), 12, 'all at once: the server\'s link bounds it')
  assert.equal(fluidBound(bytes, link, nodes, i => i * 5), 15 + 12, 'the fourth node starts at 15 s')
  assert.equal(fluidBound(bytes, { rateMbit: 2.5 }, nodes, i => (i < 2 ? 0 : 30)), 48, 'a slow server outlasts a second wave at 30 s')
})

test('bench: the full plan runs the root-like image at its own node counts, on the scale trials\' links', () => {
  const plan = fullPlan({ rateMbit: 10, imageMib: 16, pieceKib: 128, sizes: [1, 2, 4, 8, 16, 32], unicastMaxNodes: 32, rsyncMaxNodes: 8, staggerSeconds: 1, rawMib: 0, rootlikeSizes: [1, 8, 16] })
  const rootlike = plan.scenarios.filter(s => s.group === 'rootlike')
  assert.deepEqual(rootlike.map(s => [s.id, s.nodes, s.image]), [['rootlike-n1', 1, 'rootlike'], ['rootlike-n8', 8, 'rootlike'], ['rootlike-n16', 16, 'rootlike']])
  for (const s of rootlike) {
    assert.equal(s.server.rateMbit, 10)
    assert.ok(s.transports.some(t => t.id === 'bt') && s.transports.some(t => t.id === 'aria2'))
  }
  assert.ok(plan.scenarios.filter(s => s.group !== 'rootlike').every(s => s.image === undefined), 'the other scenarios keep the one-file image')
})

test('bench: the root-like image is the generated tree without its large libraries, hard links kept, packed by si-server', { timeout: 120_000 }, async t => {
  const serverBin = join(ROOT, 'dist', 'si-server')
  if (!existsSync(serverBin)) { t.skip('dist/si-server is missing: run make build'); return }
  const work = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'si-bench-rootlike-'))
  try {
    const made = await makeRootlikeImage({ serverBin, repo: join(work, 'repo'), workDir: work, entries: 600, cacheDir: join(work, 'cache'), pieceLength: 64 * 1024 })
    const tree = join(work, 'rootlike-tree')
    let files = 0
    let largest = 0
    let linked = 0
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const st = lstatSync(join(dir, name))
        if (st.isDirectory()) walk(join(dir, name))
        else if (st.isFile()) { files++; largest = Math.max(largest, st.size); if (st.nlink > 1) linked++ }
      }
    }
    walk(tree)
    assert.ok(largest < LARGE_FILE_BYTES, `a file of ${largest} bytes was kept`)
    assert.ok(files > 400, `${files} files`)
    assert.ok(linked >= 2, 'hard links are kept as hard links')
    assert.ok(made.image.size < 16 * 1024 * 1024, `image of ${made.image.size} bytes: the large libraries went into it`)
    assert.equal(made.image.pieceLength, 64 * 1024)
    assert.equal(made.image.entries, made.tree.entries + 1, 'the image holds the root and every entry of the scaled tree')
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
})

test('bench: a trial\'s timeline splits each node\'s time into start-up, busy link time, unused link time and finish, adding up to when it was done', () => {
  const rate = 1_000_000
  const step = 0.5
  // The server sends at its full rate from 0.5 s to 10 s; the node receives from 1 s on at
  // full rate, stalls from 6 s to 8 s, gets its last bytes at 12 s, and has the image at 12.5 s.
  const times = Array.from({ length: 29 }, (_, i) => i * step)
  const serverSent = times.map((t): [number, number] => [t, Math.min(Math.max(0, t - 0.5), 9.5) * rate])
  const nodeRate = (t: number): number => (t > 1 && t <= 6) || (t > 8 && t <= 12) ? rate : 0
  const received: Array<[number, number]> = [[0, 0]]
  for (let i = 1; i < times.length; i++) received.push([times[i], received[i - 1][1] + nodeRate(times[i]) * step])
  const trial = {
    transport: 'bt', T: 12.5, tStar: 9, imageBytes: 9 * rate, serverSent,
    nodeResults: [{ name: 'n1', rateMbit: 8, startedAt: 0, verifiedAt: 12.5, downloadedFromServer: 3 * rate, received, verified: [], ok: true }]
  } as unknown as TrialResult
  const tl = trialTimeline(trial, { serverBytesPerSecond: rate, nodeBytesPerSecond: () => rate })
  assert.ok(tl !== undefined)
  assert.equal(tl.sampleSeconds, step)
  assert.deepEqual([tl.server.firstByte, tl.server.lastByte, tl.server.busySeconds, tl.server.unusedSeconds], [0.5, 10, 9.5, 0])
  const n = tl.nodes[0]
  assert.deepEqual([n.firstByte, n.lastByte, n.busySeconds, n.unusedWhileServerSent, n.unusedAfterServer, n.finish, n.fromServer], [1, 12, 9, 2, 0, 0.5, 0.333])
  assert.equal(n.firstByte + n.busySeconds + n.unusedWhileServerSent + n.unusedAfterServer, n.lastByte, 'first byte + busy + unused = last byte')
})

test('bench: a trial\'s timeline says how far each node\'s data trailed the server\'s, in the ramp and at the end, and how busy its uplink was', () => {
  const rate = 1_000_000
  const step = 0.5
  // The server sends 10 MB at full rate from 0 to 10 s; the node receives the same from
  // 1 s on at full rate, stalls from 5 s to 7 s (3 s behind from then on), and relays at
  // half its uplink's rate from 2 s to 10 s.
  const times = Array.from({ length: 29 }, (_, i) => i * step)
  const cumulative = (f: (t: number) => number): Array<[number, number]> => {
    const out: Array<[number, number]> = [[0, 0]]
    for (let i = 1; i < times.length; i++) out.push([times[i], out[i - 1][1] + f(times[i]) * step])
    return out
  }
  const serverSent = cumulative(t => t <= 10 ? rate : 0)
  const received = cumulative(t => (t > 1 && t <= 5) || (t > 7 && t <= 13) ? rate : 0)
  const sent = cumulative(t => t > 2 && t <= 10 ? rate / 2 : 0)
  const trial = {
    transport: 'bt', T: 13.5, tStar: 10, imageBytes: 10 * rate, serverSent,
    nodeResults: [{ name: 'n1', rateMbit: 8, startedAt: 0, verifiedAt: 13.5, received, sent, verified: [], ok: true }]
  } as unknown as TrialResult
  const n = trialTimeline(trial, { serverBytesPerSecond: rate, nodeBytesPerSecond: () => rate })?.nodes[0]
  assert.ok(n !== undefined)
  assert.equal(n.behindEarly, 1, 'the first tenth came 1 s after the server sent it')
  assert.equal(n.behindLate, 3, 'the stall put the node 3 s behind to the end')
  assert.equal(n.uplinkBusy, 0.444, 'half its uplink for 8 of the 9 s from its first byte to the server\'s last')
})
