// The bounded HTTP exchange the agent and the tracker client use, against a real server on port 0.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { httpRequest } from '../src/http-client.ts'
import { isSiError } from '../src/errors.ts'

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
