// Bad input on the command line: one clear line on stderr naming the problem, and a
// non-zero exit, from the executables as shipped.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile, readFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeTree } from './helpers/trees.ts'
import { requireBuild, run, startServer, freePort, SI_AGENT, SI_SERVER, type ImageServerHandle, type RunResult } from './helpers/processes.ts'

let dir: string
let repo: string
let server: ImageServerHandle
let key: string

before(async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-cli-'))
  repo = join(dir, 'repo')
  await makeTree(join(dir, 'source'), 2)
  assert.equal((await run(SI_SERVER, ['image', 'add', 'golden', '--from', join(dir, 'source'), '--repo', repo])).code, 0)
  server = await startServer(repo)
  key = (await run(SI_SERVER, ['key', 'show', '--repo', repo])).stdout.trim()
})

after(async () => {
  await server?.process.stop()
  await rm(dir, { recursive: true, force: true })
})

function assertOneLineError (r: RunResult, code: string, mentions: RegExp): void {
  assert.notEqual(r.code, 0, `expected failure, got exit 0: ${r.stderr}`)
  const lines = r.stderr.trim().split('\n')
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${r.stderr}`)
  assert.match(lines[0], new RegExp(`error: ${code}: `))
  assert.match(lines[0], mentions)
}

// With the server's key: no warning that the download is unauthenticated, only the error.
const deploy = (...args: string[]): Promise<RunResult> => run(SI_AGENT, ['deploy', '--no-report', '--trusted-key', key, '--target', join(dir, 'target'), ...args], { timeoutMs: 30_000 })

test('an unknown image is named, with the versions that exist', async () => {
  assertOneLineError(await deploy('--server', server.url, '--image', 'nope'), 'ERR_IMAGE_NOT_FOUND', /"nope"/)
  assertOneLineError(await deploy('--server', server.url, '--image', 'golden@7'), 'ERR_IMAGE_NOT_FOUND', /golden@7.*available: 1|available.*1/)
})

test('an unreachable server is named', async () => {
  const port = await freePort()
  assertOneLineError(await deploy('--server', `http://127.0.0.1:${port}`, '--image', 'golden'), 'ERR_SERVER_UNREACHABLE', new RegExp(`127\\.0\\.0\\.1:${port}`))
})

test('a corrupt or truncated torrent is refused, naming what is wrong', async () => {
  const garbage = join(dir, 'garbage.torrent')
  await writeFile(garbage, 'this is not bencode')
  assertOneLineError(await deploy('--torrent', garbage), 'ERR_INVALID_TORRENT', /garbage\.torrent/)
  const good = Buffer.from(await (await fetch(`${server.url}/images/golden/image.torrent`)).arrayBuffer())
  const truncated = join(dir, 'truncated.torrent')
  await writeFile(truncated, good.subarray(0, good.length - 30))
  assertOneLineError(await deploy('--torrent', truncated), 'ERR_INVALID_TORRENT', /truncated\.torrent/)
})

test('invalid flags are named', async () => {
  assertOneLineError(await deploy('--server', server.url, '--image', 'golden', '--frobnicate'), 'ERR_INVALID_ARGUMENT', /--frobnicate/)
  assertOneLineError(await deploy('--server', server.url, '--image', 'golden', '--seed-wait', 'sometimes'), 'ERR_INVALID_ARGUMENT', /--seed-wait "sometimes"/)
  assertOneLineError(await deploy('--server', server.url, '--image', 'golden', '--peer-port', '70000'), 'ERR_INVALID_ARGUMENT', /--peer-port "70000"/)
  assertOneLineError(await deploy('--server', 'ftp://x', '--image', 'golden'), 'ERR_INVALID_ARGUMENT', /--server "ftp:\/\/x"/)
  assertOneLineError(await deploy('--server', server.url, '--image', '../etc'), 'ERR_INVALID_IMAGE_NAME', /\.\.\/etc/)
  assertOneLineError(await run(SI_AGENT, ['deploy', '--server', server.url, '--image', 'golden']), 'ERR_INVALID_ARGUMENT', /--target/)
  assertOneLineError(await run(SI_AGENT, ['frobnicate']), 'ERR_INVALID_ARGUMENT', /frobnicate/)
  const extra = await run(SI_AGENT, ['deploy', 'stray', '--server', server.url, '--image', 'golden'])
  assertOneLineError(extra, 'ERR_INVALID_ARGUMENT', /unexpected argument "stray"; usage: si-agent deploy /)
  assertOneLineError(await deploy('--server', server.url, '--image', 'golden', '--trusted-key', 'ed25519:short'), 'ERR_INVALID_ARGUMENT', /--trusted-key given more than once/)
  assertOneLineError(await run(SI_AGENT, ['deploy', '--server', server.url, '--image', 'golden', '--target', join(dir, 't'), '--trusted-key', 'ed25519:short']), 'ERR_INVALID_ARGUMENT', /--trusted-key "ed25519:short": expected ed25519:/)
  assertOneLineError(await run(SI_AGENT, ['deploy', '--server', server.url, '--image', 'golden', '--target', join(dir, 't'), '--token', 'x y']), 'ERR_INVALID_ARGUMENT', /--token "x y"/)
})

test('nothing is written into the target when the image cannot be had', async () => {
  const target = join(dir, 'untouched')
  await run(SI_AGENT, ['deploy', '--no-report', '--server', server.url, '--image', 'nope', '--target', target])
  await assert.rejects(readdir(target), /ENOENT/)
})

test('si-server names bad input too', async () => {
  assertOneLineError(await run(SI_SERVER, ['image', 'add', 'x', '--from', join(dir, 'missing'), '--repo', repo]), 'ERR_SOURCE_NOT_FOUND', /missing/)
  assertOneLineError(await run(SI_SERVER, ['image', 'add', 'bad/name', '--from', join(dir, 'source'), '--repo', repo]), 'ERR_INVALID_IMAGE_NAME', /bad\/name/)
  assertOneLineError(await run(SI_SERVER, ['image', 'rm', 'nope', '--repo', repo]), 'ERR_IMAGE_NOT_FOUND', /nope/)
  assertOneLineError(await run(SI_SERVER, ['serve', '--repo', repo, '--listen', 'nowhere']), 'ERR_INVALID_ARGUMENT', /--listen "nowhere"/)
  assertOneLineError(await run(SI_SERVER, ['serve', '--repo', repo, '--upload-limit', 'fast']), 'ERR_INVALID_ARGUMENT', /--upload-limit "fast"/)
  assertOneLineError(await run(SI_SERVER, ['serve', '--repo', repo, '--listen', `127.0.0.1:${server.httpPort}`, '--peer-listen', '127.0.0.1:0']), 'ERR_INVALID_ARGUMENT', new RegExp(`${server.httpPort}`))
  assertOneLineError(await run(SI_SERVER, ['key', 'rotate', '--repo', repo]), 'ERR_INVALID_ARGUMENT', /unknown command "rotate"; usage: si-server key show/)
  assertOneLineError(await run(SI_SERVER, ['token', 'show', '--group', 'no/such', '--repo', repo]), 'ERR_INVALID_ARGUMENT', /--group "no\/such"/)
  assertOneLineError(await run(SI_SERVER, ['token', 'show', '--group', 'g', '--node', 'n', '--repo', repo]), 'ERR_INVALID_ARGUMENT', /--group or --node, not both/)
})

test('every command answers --help with its usage', async () => {
  for (const args of [['deploy', '--help']]) {
    const r = await run(SI_AGENT, args)
    assert.equal(r.code, 0)
    assert.match(r.stdout, /usage: si-agent deploy/)
  }
  for (const args of [['serve', '--help'], ['image', 'add', '--help'], ['image', 'list', '--help'], ['image', 'rm', '--help'], ['key', '--help'], ['token', 'show', '--help'], ['--help']]) {
    const r = await run(SI_SERVER, args)
    assert.equal(r.code, 0, args.join(' '))
    assert.match(r.stdout, /usage: si-server/)
  }
  const list = await run(SI_SERVER, ['image', 'list', '--repo', repo])
  assert.match(list.stdout, /golden\s+1\s/)
  assert.ok((await readFile(join(repo, 'images/golden/1/image.torrent'))).length > 0)
})
