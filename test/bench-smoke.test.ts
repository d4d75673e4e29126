// The benchmark harness checked end to end on a small cluster: namespaces made and
// removed, links shaped, every node verified, results and figures written. Needs root
// and `ip netns`; skipped with the reason otherwise.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fluidBound, lateStartSeconds, LATE_START_SECONDS } from '../scripts/bench/metrics.ts'

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
