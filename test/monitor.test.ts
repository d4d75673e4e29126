// `si-server monitor` as an administrator runs it: in a pseudo-terminal (script(1)) it
// redraws a table in place, failures on top; piped, it writes plain lines; --once prints
// the table and exits. A node's text cannot put escapes on the administrator's terminal.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImageServer } from '../src/server/image-server.ts'
import { hasCommand } from './helpers/interop.ts'
import { requireBuild, run, SI_SERVER } from './helpers/processes.ts'
import { postReport } from './helpers/reports.ts'

const RUN_MS = 2_500
let dir: string
let server: ImageServer
let url: string

before(async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-monitor-'))
  server = new ImageServer({ repoDir: join(dir, 'repo'), host: '127.0.0.1', port: 0, peerPort: 0, seed: false })
  await server.start()
  url = `http://127.0.0.1:${server.httpPort}`
  const post = async (node: string, body: object): Promise<void> => {
    const res = await postReport(url, node, body)
    assert.equal(res.status, 200, await res.text())
  }
  await post('node01', { phase: 'downloading', image: 'compute@2', progress: 0.4, downloadRate: 12e6, bytesFromServer: 1e6, bytesFromPeers: 3e6 })
  await post('node02', { phase: 'done', image: 'compute@2', progress: 1 })
  await post('node03', { phase: 'failed', image: 'compute@2', error: { code: 'ERR_DISK_TOO_SMALL', message: 'sda: 1 GB\u001b[2J, layout needs 8 GB' } })
  await post('node04', { phase: 'extracting', image: 'compute@2', progress: 1 })
})

after(async () => {
  await server?.stop()
  await rm(dir, { recursive: true, force: true })
})

/** Runs a command for a while, then stops it with SIGINT, as an administrator would; its output. */
function runFor (command: string, args: string[], ms: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise(resolve => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TERM: 'xterm' } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    const stop = setTimeout(() => child.kill('SIGINT'), ms)
    const hard = setTimeout(() => child.kill('SIGKILL'), ms + 5_000)
    child.on('close', code => { clearTimeout(stop); clearTimeout(hard); resolve({ code, stdout, stderr }) })
  })
}

const NODE_LINE = /^(node\d\d)\s/

test('in a pseudo-terminal the monitor redraws a table, failures on top, and a node\'s escapes are not passed through', { skip: hasCommand('script') ? false : 'script(1) is not installed' }, async () => {
  const r = await runFor('script', ['-qfec', `stty cols 140 rows 30; ${SI_SERVER} monitor --server ${url} --interval 0.5`, '/dev/null'], RUN_MS)
  assert.match(r.stdout, /\u001b\[H\u001b\[2J/, 'the screen is redrawn in place')
  const frames = r.stdout.split('\u001b[H\u001b[2J').filter(f => f.includes('NODE'))
  assert.ok(frames.length >= 2, `${frames.length} frames in ${RUN_MS} ms`)
  const last = frames[frames.length - 1].split(/\r?\n/)
  assert.match(last[0], /4 nodes \(downloading 1, extracting 1, done 1, failed 1\)/)
  const order = last.map(l => NODE_LINE.exec(l)?.[1]).filter(n => n !== undefined)
  assert.deepEqual(order, ['node03', 'node01', 'node04', 'node02'], 'failed first, then by phase')
  assert.match(last.find(l => l.startsWith('node03')) ?? '', /failed .*ERR_DISK_TOO_SMALL: sda: 1 GB /)
  assert.equal(frames.join('').includes('\u001b[2J, layout'), false, 'the escape in the message was neutralised')
  assert.ok(last.every(l => l.length <= 140), 'lines fit the terminal')
})

test('piped, the monitor writes one plain line per node and change; --once prints the table and exits', async () => {
  const piped = await runFor(SI_SERVER, ['monitor', '--server', url, '--interval', '0.5'], 1_500)
  assert.equal(piped.stderr, '')
  assert.equal(/\u001b/.test(piped.stdout), false, 'no escape sequences in a pipe')
  const lines = piped.stdout.trim().split('\n')
  assert.equal(lines.length, 4, piped.stdout)
  assert.ok(lines.every(l => /^\d\d:\d\d:\d\d node0\d /.test(l)), piped.stdout)

  const once = await run(SI_SERVER, ['monitor', '--server', url, '--once'])
  assert.equal(once.code, 0, once.stderr)
  assert.match(once.stdout, /^\d\d:\d\d:\d\d http:\/\/127\.0\.0\.1:\d+: 4 nodes/)
  assert.match(once.stdout, /NODE +PHASE +PROGRESS/)

  const unreachable = await run(SI_SERVER, ['monitor', '--server', 'http://127.0.0.1:1', '--once'])
  assert.equal(unreachable.code, 1)
  assert.match(unreachable.stderr, /si-server: error: ERR_SERVER_UNREACHABLE/)
})
