// Malformed HTTP requests, announces and peer connections: each gets a clear refusal
// and the server goes on serving.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeTree } from './helpers/trees.ts'
import { requireBuild, run, startServer, SI_SERVER, type ImageServerHandle } from './helpers/processes.ts'
import { REPORT_AUTH_HEADER, reportAuth } from '../src/formats/node-auth.ts'

let dir: string
let server: ImageServerHandle

before(async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-robust-'))
  await makeTree(join(dir, 'source'), 2)
  assert.equal((await run(SI_SERVER, ['image', 'add', 'golden', '--from', join(dir, 'source'), '--repo', join(dir, 'repo')])).code, 0)
  server = await startServer(join(dir, 'repo'))
})

after(async () => {
  await server?.process.stop()
  await rm(dir, { recursive: true, force: true })
})

/** Sends raw bytes, returns whatever comes back before the peer closes (bounded). */
function raw (port: number, bytes: Buffer | string, waitMs = 2000): Promise<string> {
  return new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    let got = ''
    const done = (): void => { socket.destroy(); resolve(got) }
    const timer = setTimeout(done, waitMs)
    socket.on('data', c => { got += c.toString('latin1') })
    socket.on('close', () => { clearTimeout(timer); resolve(got) })
    socket.on('error', () => { clearTimeout(timer); resolve(got) })
    socket.write(bytes)
  })
}

async function assertAlive (): Promise<void> {
  const res = await fetch(`${server.url}/api/images`)
  assert.equal(res.status, 200)
  assert.equal(((await res.json()) as unknown[]).length, 1)
  assert.equal(server.process.child.exitCode, null, 'server still running')
}

test('garbage on the HTTP port gets 400 and the server survives', async () => {
  assert.match(await raw(server.httpPort, 'BLAH\r\n\r\n'), /400 Bad Request/)
  assert.match(await raw(server.httpPort, Buffer.from([0, 1, 2, 255, 254, 13, 10, 13, 10])), /400/)
  assert.match(await raw(server.httpPort, `GET / HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(40_000)}\r\n\r\n`), /431|400/)
  // Found by the HTTP fuzzer: "//" was read as a URL with an empty host (500), "//api/images" as host "api".
  for (const target of ['//', '///x', '//api/images', `/${'/'.repeat(300)}`]) {
    const answer = await raw(server.httpPort, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
    assert.match(answer, /^HTTP\/1\.1 400 .*\r\n[\s\S]*not a path starting with a single \//, target)
  }
  await assertAlive()
})

test('bad paths, names and ranges get 4xx naming the problem', async () => {
  const cases: Array<[string, number, RegExp, Record<string, string>?]> = [
    ['/images/..%2F..%2Fetc/1/image.tar', 400, /name/],
    ['/images/golden/9/image.torrent', 404, /golden@9/],
    ['/images/nope/image.torrent', 404, /nope.*not found/],
    ['/images/golden/1/image.tar', 416, /^$/, { range: 'bytes=999999999-' }],
    ['/nothing/here', 404, /no route/],
    ['/images/golden/%zz/image.tar', 400, /name|version/]
  ]
  for (const [path, status, body, headers] of cases) {
    const res = await fetch(server.url + path, { headers })
    assert.equal(res.status, status, path)
    assert.match(await res.text(), body, path)
  }
  const put = await fetch(`${server.url}/api/images`, { method: 'PUT' })
  assert.equal(put.status, 405)
  await assertAlive()
})

test('byte ranges of the payload are served exactly', async () => {
  const whole = Buffer.from(await (await fetch(`${server.url}/images/golden/1/image.tar`)).arrayBuffer())
  const res = await fetch(`${server.url}/images/golden/1/image.tar`, { headers: { range: 'bytes=1000-1999' } })
  assert.equal(res.status, 206)
  assert.equal(res.headers.get('content-range'), `bytes 1000-1999/${whole.length}`)
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), whole.subarray(1000, 2000))
  const suffix = await fetch(`${server.url}/images/golden/1/image.tar`, { headers: { range: 'bytes=-10' } })
  assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), whole.subarray(whole.length - 10))
})

test('malformed announces get a failure reason and the tracker keeps working', async () => {
  for (const query of ['', 'info_hash=short', 'info_hash=%ZZ', `info_hash=${'%41'.repeat(20)}&peer_id=${'%42'.repeat(20)}&port=0&uploaded=0&downloaded=0&left=0`]) {
    const res = await fetch(`${server.url}/announce?${query}`)
    assert.equal(res.status, 200)
    assert.match(await res.text(), /failure reason/)
  }
  await assertAlive()
})

test('bad fleet reports are refused', async () => {
  // Signed with the node's credential, as the agent signs them (test/trust.test.ts refuses unsigned ones).
  const { node, credential } = await (await fetch(`${server.url}/api/nodes/n1/credential`)).json() as { node: string; credential: string }
  assert.equal(node, 'n1')
  const post = (node: string, body: string): Promise<Response> => fetch(`${server.url}/api/nodes/${node}/events`, { method: 'POST', body, headers: { 'content-type': 'application/json', [REPORT_AUTH_HEADER]: reportAuth(credential, node, body) } })
  assert.equal((await post('n1', 'not json')).status, 400)
  assert.equal((await post('n1', '[1,2]')).status, 400)
  assert.equal((await post('bad%20name', '{}')).status, 400)
  assert.equal((await post('n1', JSON.stringify({ pad: 'x'.repeat(100_000) }))).status, 413)
  assert.equal((await post('n1', JSON.stringify({ phase: 'nowhere' }))).status, 400)
  const accepted = await post('n1', JSON.stringify({ type: 'phase', phase: 'download' }))
  assert.equal(accepted.status, 200)
  assert.ok(((await accepted.json()) as { intervalSeconds: number }).intervalSeconds > 0, 'the answer says when to report next')
  await assertAlive()
})

test('the seeder drops peers that do not speak BitTorrent, lie about lengths or flood requests', async () => {
  assert.equal(await raw(server.peerPort, 'GET / HTTP/1.1\r\n\r\n'), '', 'not a handshake: closed without a word')
  const unknownHash = Buffer.concat([Buffer.from([19]), Buffer.from('BitTorrent protocol'), Buffer.alloc(8), Buffer.alloc(20, 9), Buffer.alloc(20, 1)])
  assert.equal(await raw(server.peerPort, unknownHash), '', 'unknown torrent: closed')
  const torrent = Buffer.from(await (await fetch(`${server.url}/images/golden/image.torrent`)).arrayBuffer())
  const { parseTorrent } = await import('../src/torrent/metainfo.ts')
  const infoHash = parseTorrent(torrent).infoHash
  const handshake = Buffer.concat([Buffer.from([19]), Buffer.from('BitTorrent protocol'), Buffer.alloc(8), infoHash, Buffer.alloc(20, 2)])
  const answered = await raw(server.peerPort, handshake, 500)
  assert.ok(answered.startsWith('\x13BitTorrent protocol'), 'a proper handshake is answered')
  const hugeLength = Buffer.from([0x7f, 0xff, 0xff, 0xff, 7])
  const started = Date.now()
  await raw(server.peerPort, Buffer.concat([handshake, hugeLength]), 5000)
  assert.ok(Date.now() - started < 4000, 'a 2 GiB message is refused at once, not buffered')
  const request = (i: number): Buffer => { const b = Buffer.alloc(17); b.writeUInt32BE(13, 0); b[4] = 6; b.writeUInt32BE(i, 5); b.writeUInt32BE(0, 9); b.writeUInt32BE(16384, 13); return b }
  const interested = Buffer.from([0, 0, 0, 1, 2])
  const flood = Buffer.concat([handshake, interested, ...Array.from({ length: 5000 }, () => request(0))])
  await raw(server.peerPort, flood, 3000)
  await assertAlive()
})
