// scripts/bench/cpu-floor.ts: the runtime's CPU floor measured end to end on a small image
// (every piece checked against its digest, every piece uploaded once, namespaces removed),
// and a bad option refused. Needs root and `ip netns`; skipped with the reason otherwise.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SCRIPT = join(ROOT, 'scripts/bench/cpu-floor.ts')
const RUN_TIMEOUT_MS = 60_000
const NS_PREFIX = 'sifloortest-'

function skipReason (): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: the floor needs network namespaces'
  const ip = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  if (ip.error !== undefined || ip.status !== 0) return `ip netns is unavailable: ${ip.error?.message ?? ip.stderr.trim()}`
  return undefined
}

function floor (args: string[]): ReturnType<typeof spawnSync> & { stdout: string; stderr: string } {
  return spawnSync(process.execPath, ['--import', 'tsx', SCRIPT, ...args], { cwd: ROOT, encoding: 'utf8', timeout: RUN_TIMEOUT_MS })
}

test('cpu floor: a 2 MiB image from 4 peers over a shaped link is checked, uploaded once, and its CPU reported', { timeout: RUN_TIMEOUT_MS + 10_000 }, t => {
  const reason = skipReason()
  if (reason !== undefined) { t.skip(reason); return }
  const run = floor(['--runs', '1', '--peers', '4', '--rate', '100', '--image-mib', '2', '--ns-prefix', NS_PREFIX])
  assert.equal(run.status, 0, run.stderr + run.stdout)
  assert.match(run.stdout, /run 1: [\d.]+ CPU-s .* 128 blocks uploaded/)
  const summary = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { cpuSeconds: number[]; bareNodeStartCpuSeconds: number }
  assert.equal(summary.cpuSeconds.length, 1)
  assert.ok(summary.cpuSeconds[0] > summary.bareNodeStartCpuSeconds, `the run (${summary.cpuSeconds[0]} CPU-s) costs more than starting node (${summary.bareNodeStartCpuSeconds})`)
  const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout
  assert.ok(!left.includes(NS_PREFIX), `namespaces left behind: ${left}`)
})

test('cpu floor: an unknown option is refused with exit code 2, naming it', () => {
  const run = floor(['--frobnicate', '3'])
  assert.equal(run.status, 2)
  assert.match(run.stderr, /--frobnicate/)
})
