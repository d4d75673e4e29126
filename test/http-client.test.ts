// The bounded HTTP exchange the agent and the tracker client use, against a real server on port 0.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { httpRequest } from '../src/http-client.ts'
import { httpGetRetrying, GET_RETRY_MS } from '../src/deploy/http-get.ts'
import { loadTorrent } from '../src/deploy/torrent-source.ts'
import { createTorrent } from '../src/torrent/metainfo.ts'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSiError } from '../src/errors.ts'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

async function serve (t: TestContext, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => { server.closeAllConnections(); server.close() })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return `http://127.0.0.1:${address.port}`
}

const LIMITS = { timeoutMs: 2_000, maxBytes: 1024 }

test('a GET follows redirects and resolves with the final status and body', async t => {
  const base = await serve(t, (req, res) => {
    if (req.url === '/old') { res.writeHead(302, { location: '/new' }); res.end() } else res.end('here')
  })
  const reply = await httpRequest(`${base}/old`, LIMITS)
  assert.equal(reply.status, 200)
  assert.equal(reply.body.toString(), 'here')
  assert.equal(reply.url, `${base}/new`)
})

test('a POST carries its body; a non-2xx status is returned, not thrown', async t => {
  let received = ''
  const base = await serve(t, (req, res) => {
    req.setEncoding('utf8')
    req.on('data', (c: string) => { received += c })
    req.on('end', () => { res.writeHead(400); res.end('{"error":"no"}') })
  })
  const reply = await httpRequest(`${base}/events`, { ...LIMITS, method: 'POST', body: '{"type":"progress"}', headers: { 'content-type': 'application/json' } })
  assert.equal(reply.status, 400)
  assert.equal(received, '{"type":"progress"}')
})

test('a body longer than allowed is refused, whether declared or streamed', async t => {
  const base = await serve(t, (req, res) => {
    if (req.url === '/declared') { res.writeHead(200, { 'content-length': 5000 }); res.end(Buffer.alloc(5000)) } else { res.write(Buffer.alloc(800)); res.end(Buffer.alloc(800)) }
  })
  await assert.rejects(httpRequest(`${base}/declared`, LIMITS), (err: unknown) => isSiError(err, 'ERR_HTTP_STATUS') && /5000 bytes, more than 1024/.test(err.message))
  await assert.rejects(httpRequest(`${base}/chunked`, LIMITS), (err: unknown) => isSiError(err, 'ERR_HTTP_STATUS') && /larger than 1024 bytes/.test(err.message))
})

test('a server that never answers fails with ERR_SERVER_UNREACHABLE once the time is up', async t => {
  const base = await serve(t, () => { /* never answers */ })
  const started = Date.now()
  await assert.rejects(httpRequest(`${base}/slow`, { ...LIMITS, timeoutMs: 200, name: 'the plan server' }), (err: unknown) => isSiError(err, 'ERR_SERVER_UNREACHABLE') && /the plan server did not answer within 200 ms/.test(err.message))
  assert.ok(Date.now() - started < 1_500)
})

test('no server at the address: ERR_SERVER_UNREACHABLE naming the URL and the reason', async t => {
  const base = await serve(t, () => {})
  const dead = base.replace(/:\d+$/, ':1')
  await assert.rejects(httpRequest(`${dead}/x`, LIMITS), (err: unknown) => isSiError(err, 'ERR_SERVER_UNREACHABLE') && err.message.includes(`${dead}/x`) && /ECONNREFUSED/.test(err.message))
})

test('an abort ends the exchange with ERR_ABORTED, and a redirect loop with ERR_HTTP_STATUS', async t => {
  const base = await serve(t, (req, res) => {
    if (req.url === '/loop') { res.writeHead(301, { location: '/loop' }); res.end() }
  })
  const controller = new AbortController()
  setTimeout(() => controller.abort(), 50)
  await assert.rejects(httpRequest(`${base}/hang`, { ...LIMITS, signal: controller.signal }), (err: unknown) => isSiError(err, 'ERR_ABORTED'))
  await assert.rejects(httpRequest(`${base}/loop`, LIMITS), (err: unknown) => isSiError(err, 'ERR_HTTP_STATUS') && /redirected more than 5 times/.test(err.message))
})

test('a document GET is tried again while the server drops connections, and a status answer is final', async t => {
  let connections = 0
  const base = await serve(t, (req, res) => {
    connections++
    if (req.url === '/flaky' && connections <= 2) { req.socket.destroy(); return }
    if (req.url === '/missing') { res.writeHead(404); res.end(); return }
    res.end('plan')
  })
  assert.equal((await httpGetRetrying(`${base}/flaky`, { retryMs: 10 })).body.toString(), 'plan')
  assert.equal(connections, 3, 'two dropped, the third answered')
  connections = 0
  await assert.rejects(httpGetRetrying(`${base}/missing`, { retryMs: 10 }), err => isSiError(err, 'ERR_IMAGE_NOT_FOUND'))
  assert.equal(connections, 1, 'a 404 is not asked again')
})

test('a server that keeps dropping connections fails after the attempts, naming them and what to check', async t => {
  let connections = 0
  const base = await serve(t, req => { connections++; req.socket.destroy() })
  await assert.rejects(httpGetRetrying(`${base}/x`, { attempts: 3, retryMs: 10, hint: 'check --server' }),
    err => isSiError(err, 'ERR_SERVER_UNREACHABLE') && /3 attempts; check --server/.test(err.message))
  assert.equal(connections, 3)
})

test('an agent asking for its torrent gets it after a dropped connection, as from a server whose link is full', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'si-torrent-get-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'image.tar'), Buffer.alloc(40_000, 1))
  const torrent = await createTorrent({ file: join(dir, 'image.tar'), name: 'image.tar', pieceLength: 16 * 1024 })
  let connections = 0
  const base = await serve(t, (req, res) => {
    connections++
    if (connections === 1) { req.socket.destroy(); return }
    res.end(torrent)
  })
  const started = Date.now()
  const meta = await loadTorrent({ server: base, image: 'img@1' })
  assert.equal(meta.name, 'image.tar')
  assert.equal(connections, 2)
  assert.ok(Date.now() - started >= GET_RETRY_MS - 50, 'the second try waited')
})

test('an https URL goes over TLS (a plain HTTP server cannot answer it), any other scheme is refused', async t => {
  const base = await serve(t, (_req, res) => { res.end('plain') })
  assert.equal((await httpRequest(`${base}/`, LIMITS)).body.toString(), 'plain')
  await assert.rejects(httpRequest(base.replace('http:', 'https:') + '/', LIMITS), (err: unknown) => isSiError(err, 'ERR_SERVER_UNREACHABLE'))
  await assert.rejects(httpRequest(base.replace('http:', 'ftp:') + '/', LIMITS), (err: unknown) => isSiError(err, 'ERR_INVALID_ARGUMENT'))
})

test('the agent starts without loading TLS, which costs more than the rest of its start-up', t => {
  const bundle = join(ROOT, 'dist', 'si-agent.cjs')
  if (!existsSync(bundle)) { t.skip('dist/si-agent.cjs is missing: run make build'); return }
  const probe = "process.on('exit', () => process.stderr.write(process.moduleLoadList.filter(m => /^NativeModule (tls|https|_tls_wrap)$/.test(m)).join(',') + '\\n'))"
  const run = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(probe)}`, bundle, '--version'], { encoding: 'utf8', timeout: 30_000 })
  assert.equal(run.status, 0, run.stderr)
  assert.match(run.stdout, /^si-agent /)
  assert.equal(run.stderr.trim(), '', `loaded at start: ${run.stderr.trim()}`)
})
