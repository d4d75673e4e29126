import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { encodeBencode } from '../src/torrent/bencode.ts'
import { SiError } from '../src/errors.ts'
import { waitFor } from './helpers/interop.ts'
import { Tracker, type TrackerOptions } from '../src/tracker/tracker.ts'
import {
  announce,
  scrape,
  scrapeUrlFor,
  TrackerClient,
  type AnnounceParams,
  type AnnounceResult,
  type PeerAddress
} from '../src/swarm/tracker-client.ts'

// A hash with bytes that are neither ASCII nor valid UTF-8, to prove binary survives.
const INFO_HASH = Buffer.from('ff00' + '2b26253d20'.repeat(3) + '8081c3e2', 'hex').subarray(0, 20)
const WAIT_LIMIT_MS = 5000
/** Polling interval of the waits: short, as some tests time what happens between announces. */
const POLL_MS = 10

interface Served { url: string; port: number; requests: string[]; close: () => Promise<void> }

/** An HTTP server on port 0; `respond` gets each request. */
async function serve (respond: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Served> {
  const requests: string[] = []
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '')
    respond(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/announce`,
    port,
    requests,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    }
  }
}

async function serveTracker (opts: TrackerOptions = {}): Promise<Served & { tracker: Tracker }> {
  const tracker = new Tracker(opts)
  tracker.start()
  const served = await serve((req, res) => {
    if (!tracker.handle(req, res)) {
      res.statusCode = 404
      res.end()
    }
  })
  return { ...served, tracker, close: async () => { tracker.stop(); await served.close() } }
}

function peerId (n: number): Buffer {
  return Buffer.from(`-SI0001-${String(n).padStart(12, '0')}`)
}

function params (n: number, extra: Partial<AnnounceParams> = {}): AnnounceParams {
  return { infoHash: INFO_HASH, peerId: peerId(n), port: 6000 + n, uploaded: 0, downloaded: 0, left: 100, ...extra }
}

function sorted (peers: PeerAddress[]): string[] {
  return peers.map((p) => `${p.host}:${p.port}`).sort()
}

async function until (what: string, check: () => boolean): Promise<void> {
  await waitFor(what, WAIT_LIMIT_MS, () => check() || undefined, POLL_MS)
}

test('announce round trip between client and tracker with several peers', async () => {
  const t = await serveTracker({ config: { intervalSeconds: 30, minIntervalSeconds: 10 } })
  try {
    const first = await announce(t.url, params(1, { event: 'started' }))
    assert.deepEqual(first.peers, [])
    assert.equal(first.interval, 30)
    assert.equal(first.minInterval, 10)
    assert.equal(first.incomplete, 1)
    await announce(t.url, params(2, { event: 'started' }))
    await announce(t.url, params(3, { event: 'started', left: 0 }))
    const fourth = await announce(t.url, params(4, { event: 'started', numwant: 10 }))
    assert.deepEqual(sorted(fourth.peers), ['127.0.0.1:6001', '127.0.0.1:6002', '127.0.0.1:6003'])
    assert.equal(fourth.complete, 1)
    assert.equal(fourth.incomplete, 3)

    const view = t.tracker.swarm(INFO_HASH.toString('hex'))
    assert.deepEqual(view.peers.map((p) => p.peerIdHex).sort(), [1, 2, 3, 4].map((n) => peerId(n).toString('hex')))

    await announce(t.url, params(2, { event: 'completed', left: 0 }))
    await announce(t.url, params(1, { event: 'stopped' }))
    const counts = await scrape(t.url, INFO_HASH)
    assert.deepEqual(counts, { complete: 2, incomplete: 1, downloaded: 1 })
    assert.deepEqual(await scrape(t.url, Buffer.alloc(20, 7)), { complete: 0, incomplete: 0, downloaded: 0 })
  } finally {
    await t.close()
  }
})

test('scrape URL derivation follows BEP 48', () => {
  assert.equal(scrapeUrlFor('http://h:1/announce'), 'http://h:1/scrape')
  assert.equal(scrapeUrlFor('http://h/x/announce.php?k=1'), 'http://h/x/scrape.php?k=1')
  assert.equal(scrapeUrlFor('http://h/announce?passkey=a'), 'http://h/scrape?passkey=a')
  assert.throws(() => scrapeUrlFor('http://h/a'), { code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => scrapeUrlFor('http://h/announce/x'), { code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => scrapeUrlFor('udp://h/announce'), { code: 'ERR_INVALID_ARGUMENT' })
})

test('the client keeps an existing query and encodes binary bytes', async () => {
  const s = await serve((_req, res) => res.end(encodeBencode({ interval: 5, peers: new Uint8Array(0) })))
  try {
    await announce(`${s.url}?passkey=abc`, params(1, { event: 'completed', numwant: 3 }))
    const query = s.requests[0].split('?')[1]
    assert.match(query, /^passkey=abc&info_hash=%FF%00%2B%26%25%3D%20/)
    assert.match(query, /&event=completed&numwant=3$/)
    assert.match(query, /&compact=1/)
  } finally {
    await s.close()
  }
})

test('the client decodes the dictionary form, peers6 and warnings', async () => {
  const s = await serve((_req, res) => res.end(encodeBencode({
    interval: 7,
    'warning message': 'tracker is busy',
    peers: [{ ip: '10.1.2.3', port: 51413, 'peer id': peerId(9) }, { ip: 'node7.cluster', port: 6881 }],
    peers6: Buffer.from('fe800000000000000000000000000001' + '1ae1', 'hex')
  })))
  try {
    const result = await announce(s.url, params(1))
    assert.equal(result.interval, 7)
    assert.equal(result.warning, 'tracker is busy')
    assert.deepEqual(result.peers, [
      { host: '10.1.2.3', port: 51413 },
      { host: 'node7.cluster', port: 6881 },
      { host: 'fe80:0:0:0:0:0:0:1', port: 6881 }
    ])
  } finally {
    await s.close()
  }
})

test('malformed replies are rejected with ERR_TRACKER_REPLY naming the problem and the URL', async () => {
  const bodies: Record<string, { status?: number; body: Uint8Array | string }> = {
    '/html/announce': { body: '<html>hello</html>' },
    '/empty/announce': { body: '' },
    '/list/announce': { body: encodeBencode([1, 2]) },
    '/trailing/announce': { body: Buffer.concat([Buffer.from(encodeBencode({ interval: 5, peers: '' })), Buffer.from('junk')]) },
    '/failure/announce': { body: encodeBencode({ 'failure reason': 'go away' }) },
    '/compact/announce': { body: encodeBencode({ interval: 5, peers: Buffer.alloc(7) }) },
    '/compact6/announce': { body: encodeBencode({ interval: 5, peers: Buffer.alloc(0), peers6: Buffer.alloc(17) }) },
    '/port0/announce': { body: encodeBencode({ interval: 5, peers: Buffer.from([10, 0, 0, 1, 0, 0]) }) },
    '/dictport0/announce': { body: encodeBencode({ interval: 5, peers: [{ ip: '10.0.0.1', port: 0 }] }) },
    '/noip/announce': { body: encodeBencode({ interval: 5, peers: [{ port: 5 }] }) },
    '/nointerval/announce': { body: encodeBencode({ peers: Buffer.alloc(0) }) },
    '/badinterval/announce': { body: encodeBencode({ interval: -3, peers: Buffer.alloc(0) }) },
    '/badcount/announce': { body: encodeBencode({ interval: 3, complete: 'many', peers: Buffer.alloc(0) }) },
    '/peersint/announce': { body: encodeBencode({ interval: 3, peers: 12 }) },
    '/http500/announce': { status: 500, body: 'oops' },
    '/huge/announce': { body: 'd5:peers' + '9'.repeat(300_000) }
  }
  const expected: Record<string, RegExp> = {
    '/html/announce': /not bencoded/,
    '/empty/announce': /not a single bencoded dictionary/,
    '/list/announce': /not a single bencoded dictionary/,
    '/trailing/announce': /not a single bencoded dictionary/,
    '/failure/announce': /refused: go away/,
    '/compact/announce': /compact peers length 7 is not a multiple of 6/,
    '/compact6/announce': /compact peers6 length 17 is not a multiple of 18/,
    '/port0/announce': /invalid port 0/,
    '/dictport0/announce': /invalid port 0/,
    '/noip/announce': /has no ip/,
    '/nointerval/announce': /no interval/,
    '/badinterval/announce': /bad interval -3/,
    '/badcount/announce': /bad complete/,
    '/peersint/announce': /peers is neither/,
    '/http500/announce': /HTTP 500/,
    '/huge/announce': /reply larger than/
  }
  const s = await serve((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    const reply = bodies[path]
    res.statusCode = reply?.status ?? 200
    res.end(reply?.body ?? '')
  })
  try {
    for (const path of Object.keys(bodies)) {
      const url = `http://127.0.0.1:${s.port}${path}`
      await assert.rejects(announce(url, params(1)), (err: unknown) => {
        assert.ok(err instanceof SiError, path)
        assert.equal(err.code, 'ERR_TRACKER_REPLY', path)
        assert.match(err.message, expected[path], path)
        assert.ok(err.message.includes(url), `${path}: message names the URL`)
        return true
      })
    }
    await assert.rejects(scrape(`http://127.0.0.1:${s.port}/failure/announce`, INFO_HASH), { code: 'ERR_TRACKER_REPLY' })
  } finally {
    await s.close()
  }
})

test('unreachable, silent and aborted trackers fail with their own codes', async () => {
  const silent = await serve(() => { /* never answers */ })
  const refused = await serve(() => {})
  const deadUrl = refused.url
  await refused.close()
  try {
    await assert.rejects(announce(deadUrl, params(1)), { code: 'ERR_SERVER_UNREACHABLE' })
    const started = Date.now()
    await assert.rejects(announce(silent.url, params(1), { timeoutMs: 200 }), { code: 'ERR_SERVER_UNREACHABLE', message: /within 200 ms/ })
    assert.ok(Date.now() - started < 2000)
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 50)
    await assert.rejects(announce(silent.url, params(1), { signal: controller.signal }), { code: 'ERR_ABORTED' })
    await assert.rejects(announce(silent.url, params(1, { port: 0 })), { code: 'ERR_INVALID_ARGUMENT' })
    await assert.rejects(announce(silent.url, params(1, { infoHash: Buffer.alloc(19) })), { code: 'ERR_INVALID_ARGUMENT' })
  } finally {
    await silent.close()
  }
})

test('TrackerClient announces started, completed and stopped, and emits peers', async () => {
  const t = await serveTracker({ config: { intervalSeconds: 60, minIntervalSeconds: 1 } })
  const hex = INFO_HASH.toString('hex')
  await announce(t.url, params(2))
  let left = 100
  const client = new TrackerClient({
    announceUrls: [t.url],
    infoHash: INFO_HASH,
    peerId: peerId(1),
    port: 6001,
    getStats: () => ({ uploaded: 5, downloaded: 100 - left, left })
  })
  const announces: AnnounceResult[] = []
  const peerEvents: PeerAddress[][] = []
  const warnings: SiError[] = []
  client.on('announce', (r: AnnounceResult) => announces.push(r))
  client.on('peers', (p: PeerAddress[]) => peerEvents.push(p))
  client.on('warning', (w: SiError) => warnings.push(w))
  // Read through a function: an assertion on the getter would narrow its type for good.
  const last = (): AnnounceResult | undefined => client.last
  try {
    assert.equal(last(), undefined)
    client.start()
    await until('first announce', () => announces.length === 1)
    assert.deepEqual(sorted(peerEvents[0]), ['127.0.0.1:6002'])
    assert.equal(last()?.incomplete, 2)
    assert.equal(t.requests.filter((u) => u.includes('event=started')).length, 1)

    left = 0
    client.completed()
    await until('completed announce', () => announces.length === 2)
    assert.ok(t.requests[t.requests.length - 1].includes('event=completed'))
    assert.equal(t.tracker.swarm(hex).downloaded, 1)
    assert.equal(last()?.complete, 1)

    // Rate limited by the min interval (1 s): no request at once, one a second later.
    const before = t.requests.length
    client.announceNow()
    client.announceNow()
    await sleep(300)
    assert.equal(t.requests.length, before)
    await until('rate-limited announce', () => announces.length === 3)
    assert.equal(t.requests.length, before + 1)
    assert.ok(!t.requests[t.requests.length - 1].includes('event='))

    await client.stop()
    assert.ok(t.requests[t.requests.length - 1].includes('event=stopped'))
    assert.deepEqual(t.tracker.swarm(hex).peers.map((p) => p.port), [6002])
    assert.deepEqual(warnings, [])
    await client.stop()
  } finally {
    await client.stop()
    await t.close()
  }
})

test('TrackerClient re-announces at the interval override, no faster than min interval', async () => {
  const t = await serveTracker({ config: { intervalSeconds: 60, minIntervalSeconds: 1 } })
  const client = new TrackerClient({
    announceUrls: [t.url],
    infoHash: INFO_HASH,
    peerId: peerId(1),
    port: 6001,
    getStats: () => ({ uploaded: 0, downloaded: 0, left: 1 }),
    config: { announceIntervalSeconds: 0.1 }
  })
  let count = 0
  client.on('announce', () => count++)
  try {
    client.start()
    await sleep(700)
    assert.equal(count, 1, 'min interval 1 s holds back the 0.1 s override')
    await until('second announce', () => count === 2)
  } finally {
    await client.stop()
    await t.close()
  }
})

test('TrackerClient falls over to the next URL and sticks with the one that answered', async () => {
  const dead = await serve(() => {})
  const deadUrl = dead.url
  await dead.close()
  const t = await serveTracker({ config: { intervalSeconds: 60 } })
  const client = new TrackerClient({
    announceUrls: [deadUrl, t.url],
    infoHash: INFO_HASH,
    peerId: peerId(1),
    port: 6001,
    getStats: () => ({ uploaded: 0, downloaded: 0, left: 1 })
  })
  const warnings: SiError[] = []
  client.on('warning', (w: SiError) => warnings.push(w))
  try {
    client.start()
    await until('an announce', () => client.last !== undefined)
    assert.equal(warnings.length, 1)
    assert.equal(warnings[0].code, 'ERR_SERVER_UNREACHABLE')
    assert.ok(warnings[0].message.includes(deadUrl))
    client.completed()
    await until('completed', () => t.requests.some((u) => u.includes('event=completed')))
    assert.equal(warnings.length, 1, 'the working tracker is tried first now')
  } finally {
    await client.stop()
    await t.close()
  }
  assert.ok(t.requests[t.requests.length - 1].includes('event=stopped'))
})

test('TrackerClient reports failures as warnings, backs off, and stops within its bound', async () => {
  const failing = await serve((_req, res) => {
    res.statusCode = 500
    res.end()
  })
  const client = new TrackerClient({
    announceUrls: [failing.url],
    infoHash: INFO_HASH,
    peerId: peerId(1),
    port: 6001,
    getStats: () => ({ uploaded: 0, downloaded: 0, left: 1 })
  })
  const warnings: SiError[] = []
  client.on('warning', (w: SiError) => warnings.push(w))
  try {
    client.start()
    await until('a warning', () => warnings.length === 1)
    assert.equal(warnings[0].code, 'ERR_TRACKER_REPLY')
    assert.match(warnings[0].message, /HTTP 500/)
    // Backoff starts at about 2 s: no retry storm.
    await sleep(500)
    assert.equal(failing.requests.length, 1)
    client.announceNow()
    await sleep(100)
    assert.equal(failing.requests.length, 1, 'announceNow does not defeat the backoff')
  } finally {
    await client.stop()
    await failing.close()
  }
  assert.equal(client.last, undefined)
})

test('TrackerClient.stop is bounded when the tracker hangs, and aborts what is in flight', async () => {
  const silent = await serve(() => { /* never answers */ })
  const client = new TrackerClient({
    announceUrls: [silent.url],
    infoHash: INFO_HASH,
    peerId: peerId(1),
    port: 6001,
    getStats: () => ({ uploaded: 0, downloaded: 0, left: 1 })
  })
  const warnings: SiError[] = []
  client.on('warning', (w: SiError) => warnings.push(w))
  try {
    client.start()
    await until('the started request', () => silent.requests.length === 1)
    const began = Date.now()
    await client.stop()
    const took = Date.now() - began
    assert.ok(took >= 900 && took < 2000, `stop took ${took} ms`)
    assert.equal(silent.requests.length, 2)
    assert.ok(silent.requests[1].includes('event=stopped'))
    assert.deepEqual(warnings.map((w) => w.code), ['ERR_SERVER_UNREACHABLE'], 'only the stopped timeout is reported')
  } finally {
    await silent.close()
  }
})

test('TrackerClient rejects bad options up front', () => {
  const base = { announceUrls: ['http://127.0.0.1:1/announce'], infoHash: INFO_HASH, peerId: peerId(1), port: 6001, getStats: () => ({ uploaded: 0, downloaded: 0, left: 0 }) }
  assert.throws(() => new TrackerClient({ ...base, announceUrls: [] }), { code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => new TrackerClient({ ...base, announceUrls: ['ftp://x/announce'] }), { code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => new TrackerClient({ ...base, peerId: Buffer.alloc(3) }), { code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => new TrackerClient({ ...base, port: 0 }), { code: 'ERR_INVALID_ARGUMENT' })
})
