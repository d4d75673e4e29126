// `make demo` end to end, smaller: a real si-server and real si-agent processes (from
// dist/, which `make test` builds first) on loopback. The demo must install a verified
// image on every node with the server sending less than one copy per node, and leave
// no process and no file behind, whether it ends normally or by Ctrl-C.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DEMO = join(ROOT, 'scripts', 'demo.ts')
const SIZE_MB = 8
const NODES = 4
const RUN_TIMEOUT_MS = 150_000
/** Bounded cleanup: SIGTERM grace (5 s) plus the time to remove the work directory. */
const INTERRUPT_EXIT_MS = 20_000
const OPTION_CHECK_MS = 20_000
const EXIT_INTERRUPTED = 130
const WORK_DIR_LINE = /^work directory: (\S+)$/m
/** Printed once the agents run (title of the live view). */
const AGENTS_STARTED = /nodes installing /

interface DemoRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

function runDemo (args: string[], opts: { timeoutMs: number; onStdout?: (text: string, kill: (s: NodeJS.Signals) => void) => void }): Promise<DemoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', DEMO, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`demo did not end within ${opts.timeoutMs / 1000} s\n${stdout}\n${stderr}`))
    }, opts.timeoutMs)
    child.stdout.setEncoding('utf8').on('data', (t: string) => {
      stdout += t
      opts.onStdout?.(stdout, s => child.kill(s))
    })
    child.stderr.setEncoding('utf8').on('data', (t: string) => { stderr += t })
    child.once('error', err => { clearTimeout(timer); reject(err) })
    child.once('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }) })
  })
}

/** Processes whose command line names `dir`: every agent (--target) and the server (--repo) do. */
async function processesMentioning (dir: string): Promise<string[]> {
  const found: string[] = []
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ')
      if (cmdline.includes(dir)) found.push(`${pid}: ${cmdline}`)
    } catch { /* it ended meanwhile */ }
  }
  return found
}

function workDirOf (run: DemoRun): string {
  const m = WORK_DIR_LINE.exec(run.stdout)
  assert.ok(m !== null, `the demo names its work directory:\n${run.stdout}\n${run.stderr}`)
  return m[1]
}

async function assertNothingLeft (workDir: string): Promise<void> {
  assert.equal(existsSync(workDir), false, `${workDir} removed`)
  assert.deepEqual(await processesMentioning(workDir), [], 'no process of the demo left running')
}

test('the dist executables the demo runs are built', () => {
  for (const exe of ['si-agent', 'si-server']) assert.ok(existsSync(join(ROOT, 'dist', exe)), `dist/${exe} is missing: run make build first`)
})

test(`demo installs a verified image on ${NODES} nodes, the server sending less than one copy per node`, { timeout: RUN_TIMEOUT_MS + 10_000 }, async t => {
  const scratch = await mkdtemp(join(tmpdir(), 'si-demo-test-'))
  t.after(() => rm(scratch, { recursive: true, force: true }))
  const summaryFile = join(scratch, 'summary.json')
  const run = await runDemo(['--size-mb', String(SIZE_MB), '--nodes', String(NODES), '--summary-json', summaryFile], { timeoutMs: RUN_TIMEOUT_MS })
  assert.equal(run.code, 0, `exit code 0\n${run.stdout}\n${run.stderr}`)
  assert.match(run.stdout, new RegExp(`Result: all ${NODES} nodes installed and verified`))
  for (let i = 1; i <= NODES; i++) assert.match(run.stdout, new RegExp(`^  node0${i} .* yes$`, 'm'), `node0${i} verified in the summary table`)

  const summary = JSON.parse(await readFile(summaryFile, 'utf8'))
  assert.equal(summary.ok, true)
  assert.equal(summary.nodes.length, NODES)
  for (const n of summary.nodes) {
    assert.equal(n.exitCode, 0, `${n.node} exit code`)
    assert.equal(n.verified, true, `${n.node} verified: ${n.problems.join('; ')}`)
  }
  assert.ok(summary.imageBytes > SIZE_MB * 1e6, 'the tarball holds at least the files')
  assert.ok(summary.serverBytesSent >= summary.imageBytes, 'every piece left the server at least once')
  assert.ok(summary.serverBytesSent < NODES * summary.imageBytes, `server sent ${summary.serverBytesSent} bytes, less than ${NODES} x ${summary.imageBytes}`)
  assert.ok(summary.peerBytes > 0, 'nodes exchanged pieces among themselves')
  await assertNothingLeft(workDirOf(run))
})

test('Ctrl-C stops every process of the demo and removes its files', { timeout: RUN_TIMEOUT_MS }, async () => {
  let sent = false
  let sentAt = 0
  const run = await runDemo(['--size-mb', String(SIZE_MB), '--nodes', String(NODES)], {
    timeoutMs: RUN_TIMEOUT_MS,
    onStdout: (text, kill) => {
      if (!sent && AGENTS_STARTED.test(text)) { sent = true; sentAt = Date.now(); kill('SIGINT') }
    }
  })
  assert.ok(sent, `the agents were started before the interrupt:\n${run.stdout}\n${run.stderr}`)
  assert.equal(run.code, EXIT_INTERRUPTED, `exit code ${EXIT_INTERRUPTED} after SIGINT\n${run.stdout}\n${run.stderr}`)
  assert.match(run.stdout, /interrupted by SIGINT/)
  assert.ok(Date.now() - sentAt < INTERRUPT_EXIT_MS, `ended ${Date.now() - sentAt} ms after SIGINT`)
  await assertNothingLeft(workDirOf(run))
})

test('a deployment that cannot finish in time fails the demo, which still cleans up', { timeout: RUN_TIMEOUT_MS }, async () => {
  // 8 MB at 200 KB/s is 40 s for the first copy alone: far past the 10 s allowed.
  const run = await runDemo(['--size-mb', String(SIZE_MB), '--nodes', '2', '--upload-limit', '200KB', '--timeout', '10'], { timeoutMs: RUN_TIMEOUT_MS })
  assert.equal(run.code, 1, `exit code 1\n${run.stdout}\n${run.stderr}`)
  assert.match(run.stdout, /was not over after 10 s/)
  assert.match(run.stdout, /Result: FAILED: 2 of 2 nodes/)
  assert.match(run.stdout, /node01: ERR_ABORTED/, 'the node says why it failed')
  await assertNothingLeft(workDirOf(run))
})

test('a bad option is refused before anything is started', { timeout: OPTION_CHECK_MS }, async () => {
  const run = await runDemo(['--nodes', 'many'], { timeoutMs: OPTION_CHECK_MS })
  assert.equal(run.code, 2)
  assert.match(run.stderr, /--nodes "many"/)
  assert.doesNotMatch(run.stdout, WORK_DIR_LINE)
})
