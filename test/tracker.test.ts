import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { bencodeKey, decodeBencode } from '../src/torrent/bencode.ts'
import { Tracker, type TrackerOptions } from '../src/tracker/tracker.ts'

const HASH_A = Buffer.alloc(20, 0xaa)
const HASH_B = Buffer.from('00ff80' + '11'.repeat(17), 'hex')

interface Running { tracker: Tracker; server: http.Server; port: number; close: () => Promise<void> }

async function startTracker (opts: TrackerOptions = {}, host = '127.0.0.1'): Promise<Running> {
  const tracker = new Tracker(opts)
  tracker.start()
  const server = http.createServer((req, res) => {
    if (!tracker.handle(req, res)) {
      res.statusCode = 404
      res.end('not found')
    }
  })
  server.listen(0, host)
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return {
    tracker,
    server,
    port,
    close: async () => {
      tracker.stop()
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    }
  }
}

function escapeAll (bytes: Uint8Array): string {
  return [...bytes].map((b) => '%' + b.toString(16).padStart(2, '0')).join('')
}

function peerId (n: number): Buffer {
  return Buffer.from(`-SI0001-${String(n).padStart(12, '0')}`)
}

interface Get { status: number; body: Buffer; headers: http.IncomingHttpHeaders }

function get (port: number, path: string, opts: { localAddress?: string; host?: string; method?: string } = {}): Promise<Get> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: opts.host ?? '127.0.0.1', port, path, agent: false, localAddress: opts.localAddress, method: opts.method ?? 'GET' }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

interface AnnounceQuery {
  infoHash?: Uint8Array
  peer: number
  port?: number
  left?: number
  event?: string
  extra?: string
}

function announcePath (q: AnnounceQuery): string {
  const parts = [
    `info_hash=${escapeAll(q.infoHash ?? HASH_A)}`,
    `peer_id=${escapeAll(peerId(q.peer))}`,
    `port=${q.port ?? 6000 + q.peer}`,
    'uploaded=0',
    'downloaded=0',
    `left=${q.left ?? 1000}`
  ]
  if (q.event !== undefined) parts.push(`event=${q.event}`)
  if (q.extra !== undefined) parts.push(q.extra)
  return '/announce?' + parts.join('&')
}

async function announceRaw (port: number, q: AnnounceQuery, localAddress?: string): Promise<any> {
  const res = await get(port, announcePath(q), { localAddress })
  assert.equal(res.status, 200)
  return decode(res.body)
}

/** A reply as the tests read it: fields looked up by name, without narrowing each one. */
function decode (body: Uint8Array): any {
  return decodeBencode(body)
}

function compactToList (bytes: Uint8Array): string[] {
  const buf = Buffer.from(bytes)
  assert.equal(buf.length % 6, 0)
  const out: string[] = []
  for (let i = 0; i < buf.length; i += 6) out.push(`${[...buf.subarray(i, i + 4)].join('.')}:${buf.readUInt16BE(i + 4)}`)
  return out.sort()
}

function failureOf (reply: any): string {
  assert.ok(reply['failure reason'] instanceof Uint8Array, 'expected a failure reason')
  return Buffer.from(reply['failure reason']).toString()
}

test('compact announce: counts, intervals, other peers, own entry excluded', async () => {
  const t = await startTracker({ config: { intervalSeconds: 20, minIntervalSeconds: 4 } })
  try {
    await announceRaw(t.port, { peer: 1, event: 'started' })
    await announceRaw(t.port, { peer: 2, event: 'started' })
    await announceRaw(t.port, { peer: 3, event: 'started', left: 0 })
    const reply = await announceRaw(t.port, { peer: 4, event: 'started' })
    assert.equal(reply.interval, 20)
    assert.equal(reply['min interval'], 4)
    assert.equal(reply.complete, 1)
    assert.equal(reply.incomplete, 3)
    assert.deepEqual(compactToList(reply.peers), ['127.0.0.1:6001', '127.0.0.1:6002', '127.0.0.1:6003'])
    assert.equal(reply.peers6, undefined)

    const again = await announceRaw(t.port, { peer: 1 })
    assert.deepEqual(compactToList(again.peers), ['127.0.0.1:6002', '127.0.0.1:6003', '127.0.0.1:6004'])

    const view = t.tracker.swarm(HASH_A.toString('hex'))
    assert.equal(view.complete, 1)
    assert.equal(view.incomplete, 3)
    assert.equal(view.peers.length, 4)
    const p1 = view.peers.find((p) => p.peerIdHex === peerId(1).toString('hex'))
    assert.ok(p1 !== undefined)
    assert.equal(p1.host, '127.0.0.1')
    assert.equal(p1.port, 6001)
    assert.equal(p1.left, 1000)
    assert.ok(Math.abs(p1.lastSeen - Date.now()) < 5000)
  } finally {
    await t.close()
  }
})

test('compact=0 returns the dictionary list, no_peer_id drops ids', async () => {
  const t = await startTracker()
  try {
    await announceRaw(t.port, { peer: 1 })
    const reply = await announceRaw(t.port, { peer: 2, extra: 'compact=0' })
    assert.ok(Array.isArray(reply.peers))
    assert.equal(reply.peers.length, 1)
    assert.equal(Buffer.from(reply.peers[0].ip).toString(), '127.0.0.1')
    assert.equal(reply.peers[0].port, 6001)
    assert.deepEqual(Buffer.from(reply.peers[0]['peer id']), peerId(1))

    const bare = await announceRaw(t.port, { peer: 2, extra: 'compact=0&no_peer_id=1' })
    assert.equal(bare.peers[0]['peer id'], undefined)
    assert.equal(bare.peers[0].port, 6001)
  } finally {
    await t.close()
  }
})

test('the default numwant, interval and min interval come from the config', async () => {
  const t = await startTracker({ config: { defaultNumwant: 2, intervalSeconds: 9 } })
  try {
    for (let i = 1; i <= 4; i++) await announceRaw(t.port, { peer: i })
    const reply = await announceRaw(t.port, { peer: 5 })
    assert.equal(compactToList(reply.peers).length, 2, 'no numwant: the configured default')
    assert.equal(reply.interval, 9)
    assert.equal(reply['min interval'], 3, 'a third of the interval')
  } finally {
    await t.close()
  }
})

test('a seeder is sent leechers only; numwant samples and is capped', async () => {
  const t = await startTracker({ config: { maxPeersPerReply: 3 } })
  try {
    for (let i = 1; i <= 5; i++) await announceRaw(t.port, { peer: i })
    await announceRaw(t.port, { peer: 6, left: 0 })
    const seeder = await announceRaw(t.port, { peer: 7, left: 0, extra: 'numwant=10' })
    const got = compactToList(seeder.peers)
    assert.equal(got.length, 3, 'capped by maxPeersPerReply')
    assert.ok(!got.includes('127.0.0.1:6006'), 'no seeder for a seeder')
    const two = await announceRaw(t.port, { peer: 1, extra: 'numwant=2' })
    assert.equal(compactToList(two.peers).length, 2)
    const none = await announceRaw(t.port, { peer: 1, extra: 'numwant=0' })
    assert.equal(none.peers.length, 0)
    const loose = await announceRaw(t.port, { peer: 1, extra: 'numwant=-1' })
    assert.equal(compactToList(loose.peers).length, 3, 'unparsable numwant falls back to the default')
  } finally {
    await t.close()
  }
})

test('stopped removes the peer, but only from the address that registered it', async () => {
  const t = await startTracker()
  try {
    await announceRaw(t.port, { peer: 1 })
    await announceRaw(t.port, { peer: 2 })
    const hex = HASH_A.toString('hex')
    const spoof = await announceRaw(t.port, { peer: 1, event: 'stopped' }, '127.0.0.2')
    assert.equal(spoof['failure reason'], undefined)
    assert.equal(t.tracker.swarm(hex).peers.length, 2)

    const reply = await announceRaw(t.port, { peer: 1, event: 'stopped' })
    assert.equal(reply.peers.length, 0, 'a leaving peer needs no peers')
    assert.equal(reply.incomplete, 1)
    assert.deepEqual(t.tracker.swarm(hex).peers.map((p) => p.port), [6002])
    const other = await announceRaw(t.port, { peer: 2 })
    assert.equal(other.peers.length, 0)
  } finally {
    await t.close()
  }
})

test('distinct source addresses are distinct peers; same address and port replaces a stale id', async () => {
  const t = await startTracker()
  try {
    await announceRaw(t.port, { peer: 1, port: 7000 }, '127.0.0.2')
    await announceRaw(t.port, { peer: 2, port: 7000 }, '127.0.0.3')
    const reply = await announceRaw(t.port, { peer: 3 })
    assert.deepEqual(compactToList(reply.peers), ['127.0.0.2:7000', '127.0.0.3:7000'])
    // A client restarted with a fresh peer id on the same address and port.
    await announceRaw(t.port, { peer: 9, port: 7000 }, '127.0.0.2')
    const view = t.tracker.swarm(HASH_A.toString('hex'))
    assert.equal(view.peers.length, 3)
    assert.ok(!view.peers.some((p) => p.peerIdHex === peerId(1).toString('hex')))
  } finally {
    await t.close()
  }
})

test('completed counts once per peer and moves it to complete', async () => {
  const t = await startTracker()
  try {
    await announceRaw(t.port, { peer: 1, event: 'started' })
    await announceRaw(t.port, { peer: 2, event: 'started' })
    const done = await announceRaw(t.port, { peer: 1, event: 'completed', left: 0 })
    assert.equal(done.complete, 1)
    assert.equal(done.incomplete, 1)
    await announceRaw(t.port, { peer: 1, event: 'completed', left: 0 })
    await announceRaw(t.port, { peer: 3, event: 'started', left: 0 })
    const view = t.tracker.swarm(HASH_A.toString('hex'))
    assert.equal(view.downloaded, 1)
    assert.equal(view.complete, 2)
    assert.equal(view.incomplete, 1)
  } finally {
    await t.close()
  }
})

test('silent peers expire after the ttl', async () => {
  // Margins of 400 ms around the ttl: a loaded machine delays each announce by tens of ms.
  const t = await startTracker({ config: { peerTtlSeconds: 1 } })
  try {
    await announceRaw(t.port, { peer: 1 })
    await announceRaw(t.port, { peer: 2, infoHash: HASH_B })
    await sleep(600)
    await announceRaw(t.port, { peer: 3 })
    await sleep(600)
    const reply = await announceRaw(t.port, { peer: 4 })
    assert.deepEqual(compactToList(reply.peers), ['127.0.0.1:6003'], 'peer 1 expired, peer 3 still fresh')
    assert.deepEqual(t.tracker.swarm(HASH_A.toString('hex')).peers.map((p) => p.port).sort(), [6003, 6004])
    // The sweep timer forgets the other swarm entirely: scrape of everything no longer lists it.
    await sleep(1750)
    const all: any = decode((await get(t.port, '/scrape')).body)
    assert.equal(Object.keys(all.files).length, 0)
    assert.equal(t.tracker.swarm(HASH_B.toString('hex')).peers.length, 0)
  } finally {
    await t.close()
  }
})

test('scrape: one, several, none (all known), unknown hash', async () => {
  const t = await startTracker()
  try {
    await announceRaw(t.port, { peer: 1 })
    await announceRaw(t.port, { peer: 2, left: 0 })
    await announceRaw(t.port, { peer: 3, infoHash: HASH_B, event: 'completed', left: 0 })
    const unknown = Buffer.alloc(20, 0x33)

    const one = await get(t.port, `/scrape?info_hash=${escapeAll(HASH_A)}`)
    assert.equal(one.status, 200)
    // Keys are raw bytes: check the wire form, not the decoder's interpretation.
    const expected = Buffer.concat([Buffer.from('d5:filesd20:'), HASH_A, Buffer.from('d8:completei1e10:downloadedi0e10:incompletei1eeee')])
    assert.deepEqual(one.body, expected)

    const several = await get(t.port, `/scrape?info_hash=${escapeAll(HASH_A)}&info_hash=${escapeAll(HASH_B)}&info_hash=${escapeAll(unknown)}`)
    const files: any = decode(several.body).files
    assert.equal(Object.keys(files).length, 3)
    assert.deepEqual(files[bencodeKey(HASH_B)], { complete: 1, incomplete: 0, downloaded: 1 })
    assert.deepEqual(files[bencodeKey(unknown)], { complete: 0, incomplete: 0, downloaded: 0 })

    const all: any = decode((await get(t.port, '/scrape')).body)
    assert.equal(Object.keys(all.files).length, 2)

    const bad: any = decode((await get(t.port, '/scrape?info_hash=abc')).body)
    assert.match(failureOf(bad), /info_hash/)
  } finally {
    await t.close()
  }
})

test('malformed announces get a failure reason naming the field; the server carries on', async () => {
  const t = await startTracker()
  try {
    const hash = escapeAll(HASH_A)
    const id = escapeAll(peerId(1))
    const base = `info_hash=${hash}&peer_id=${id}&uploaded=0&downloaded=0&left=0`
    const cases: Array<[string, RegExp]> = [
      [`/announce?peer_id=${id}&port=1&uploaded=0&downloaded=0&left=0`, /missing info_hash/],
      [`/announce?info_hash=${hash.slice(0, 30)}&peer_id=${id}&port=1&uploaded=0&downloaded=0&left=0`, /info_hash must be 20 bytes/],
      [`/announce?info_hash=${hash}&info_hash=${hash}&peer_id=${id}&port=1&uploaded=0&downloaded=0&left=0`, /info_hash given more than once/],
      [`/announce?info_hash=${hash}&port=1&uploaded=0&downloaded=0&left=0`, /missing peer_id/],
      [`/announce?${base}`, /missing port/],
      [`/announce?${base}&port=0`, /port out of range/],
      [`/announce?${base}&port=65536`, /port out of range/],
      [`/announce?${base}&port=abc`, /port must be a non-negative integer/],
      [`/announce?${base.replace('left=0', 'left=-5')}&port=1`, /left must be a non-negative integer/],
      [`/announce?${base.replace('uploaded=0', 'uploaded=1e9')}&port=1`, /uploaded must be/],
      [`/announce?${base.replace('&downloaded=0', '')}&port=1`, /missing downloaded/],
      [`/announce?${base}&port=1&event=exploded`, /event not one of/],
      ['/announce?%%%garbage', /malformed percent-encoding/],
      ['/announce?info_hash=%zz', /malformed percent-encoding in info_hash/],
      ['/announce', /missing info_hash/],
      [`/announce?${base}&port=1&pad=${'x'.repeat(5000)}`, /query too long/],
      [`/announce?${'a=1&'.repeat(200)}`, /too many query parameters/]
    ]
    for (const [path, pattern] of cases) {
      const res = await get(t.port, path)
      assert.equal(res.status, 200, path)
      assert.match(failureOf(decode(res.body)), pattern, path.slice(0, 120))
    }
    // Beyond Node's own header limit the HTTP layer refuses, and the tracker lives on.
    const huge = await get(t.port, `/announce?${base}&port=1&pad=${'x'.repeat(20_000)}`)
    assert.equal(huge.status, 431)

    const post = await get(t.port, announcePath({ peer: 1 }), { method: 'POST' })
    assert.equal(post.status, 405)
    assert.match(failureOf(decode(post.body)), /method POST/)

    const other = await get(t.port, '/announcements')
    assert.equal(other.status, 404, 'other paths are left to the caller')

    const ok = await announceRaw(t.port, { peer: 1 })
    assert.equal(ok['failure reason'], undefined)
    assert.equal(ok.incomplete, 1)
  } finally {
    await t.close()
  }
})

test('unknown info hashes are refused when the tracker knows its torrents, after one more look', async () => {
  const served = new Set([HASH_A.toString('hex')])
  let looks = 0
  const t = await startTracker({
    torrents: {
      status: hex => served.has(hex) ? { served: true } : { served: false },
      refresh: async () => { looks++ }
    }
  })
  try {
    const ok = await announceRaw(t.port, { peer: 1 })
    assert.equal(ok['failure reason'], undefined)
    assert.equal(looks, 0, 'a known hash needs no look')
    const refused = await announceRaw(t.port, { peer: 1, infoHash: HASH_B })
    assert.match(failureOf(refused), /info_hash [0-9a-f]{40} is not served/)
    assert.equal(looks, 1, 'an unknown hash is looked for once')
    const scraped: any = decode((await get(t.port, `/scrape?info_hash=${escapeAll(HASH_B)}`)).body)
    assert.equal(Object.keys(scraped.files).length, 0)
    // A version added a moment ago is found by that look.
    const t2 = await startTracker({
      torrents: {
        status: hex => served.has(hex) ? { served: true } : { served: false },
        refresh: async () => { served.add(HASH_B.toString('hex')) }
      }
    })
    try {
      assert.equal((await announceRaw(t2.port, { peer: 1, infoHash: HASH_B }))['failure reason'], undefined)
    } finally {
      await t2.close()
    }
  } finally {
    await t.close()
  }
})

test('a removed torrent is refused with ERR_IMAGE_REMOVED, final (BEP 31), and its peers are forgotten', async () => {
  let removed = false
  const t = await startTracker({
    torrents: {
      status: () => removed ? { served: false, removed: 'golden@1' } : { served: true },
      refresh: async () => {}
    }
  })
  try {
    await announceRaw(t.port, { peer: 1 })
    removed = true
    t.tracker.forget(HASH_A.toString('hex'))
    assert.equal(t.tracker.swarm(HASH_A.toString('hex')).peers.length, 0)
    const reply = await announceRaw(t.port, { peer: 1 })
    assert.match(failureOf(reply), /image golden@1 was removed from this server/)
    assert.equal(Buffer.from(reply['error code']).toString(), 'ERR_IMAGE_REMOVED')
    assert.equal(Buffer.from(reply['retry in']).toString(), 'never')
    const scraped: any = decode((await get(t.port, '/scrape')).body)
    assert.equal(Object.keys(scraped.files).length, 0, 'a full scrape lists served torrents only')
  } finally {
    await t.close()
  }
})

test('one address keeps at most maxPeersPerAddress entries per swarm: its oldest make room, others are untouched', async () => {
  const t = await startTracker({ config: { maxPeersPerAddress: 3 } })
  try {
    await announceRaw(t.port, { peer: 1 }, '127.0.0.1')
    for (let i = 10; i < 20; i++) await announceRaw(t.port, { peer: i }, '127.0.0.2')
    const view = t.tracker.swarm(HASH_A.toString('hex'))
    const fromFlooder = view.peers.filter(p => p.host === '127.0.0.2').map(p => p.port).sort()
    assert.deepEqual(fromFlooder, [6017, 6018, 6019], 'the three most recent of the flooding address')
    assert.equal(view.peers.filter(p => p.host === '127.0.0.1').length, 1)
    // This machine's own address is not capped: agents run side by side there in tests.
    for (let i = 30; i < 36; i++) await announceRaw(t.port, { peer: i }, '127.0.0.1')
    assert.equal(t.tracker.swarm(HASH_A.toString('hex')).peers.filter(p => p.host === '127.0.0.1').length, 7)
  } finally {
    await t.close()
  }
})

test('a sample is uniform, never holds the asker, and a seeder is sent leechers only', async () => {
  const t = await startTracker({ config: { maxPeersPerReply: 200 } })
  try {
    for (let i = 1; i <= 40; i++) await announceRaw(t.port, { peer: i, left: i <= 10 ? 0 : 1000 })
    const counts = new Map<string, number>()
    for (let round = 0; round < 200; round++) {
      const reply = await announceRaw(t.port, { peer: 1, left: 0, extra: 'numwant=5' })
      const peers = compactToList(reply.peers)
      assert.equal(peers.length, 5)
      assert.equal(new Set(peers).size, 5, 'distinct peers')
      for (const p of peers) {
        const port = Number(p.split(':')[1])
        assert.ok(port > 6010, `a seeder got seeder ${p}`)
        counts.set(p, (counts.get(p) ?? 0) + 1)
      }
    }
    // 30 leechers, 1000 draws: about 33 each; none left out, none favoured.
    assert.equal(counts.size, 30)
    for (const [p, n] of counts) assert.ok(n > 10 && n < 70, `${p} drawn ${n} times of 1000`)
    const all = compactToList((await announceRaw(t.port, { peer: 11, extra: 'numwant=200' })).peers)
    assert.equal(all.length, 39, 'everyone but the asker')
    assert.ok(!all.includes('127.0.0.1:6011'))
  } finally {
    await t.close()
  }
})

test('bounds: peers per swarm and number of swarms', async () => {
  const t = await startTracker({ config: { maxPeersPerSwarm: 2, maxSwarms: 1 } })
  try {
    await announceRaw(t.port, { peer: 1 })
    await announceRaw(t.port, { peer: 2 })
    assert.match(failureOf(await announceRaw(t.port, { peer: 3 })), /swarm is full/)
    // A known peer may still update.
    assert.equal((await announceRaw(t.port, { peer: 2 }))['failure reason'], undefined)
    assert.match(failureOf(await announceRaw(t.port, { peer: 1, infoHash: HASH_B })), /too many swarms/)
  } finally {
    await t.close()
  }
})

test('IPv4 clients of a dual-stack listener are reported as IPv4', async (ctx) => {
  let t: Running
  try {
    t = await startTracker({}, '::')
  } catch {
    ctx.skip('no IPv6 on this host')
    return
  }
  try {
    await announceRaw(t.port, { peer: 1 })
    assert.equal(t.tracker.swarm(HASH_A.toString('hex')).peers[0].host, '127.0.0.1')
    const v6 = await get(t.port, announcePath({ peer: 2 }), { host: '::1' }).catch(() => undefined)
    if (v6 !== undefined) {
      const reply: any = decode(v6.body)
      assert.deepEqual(compactToList(reply.peers), ['127.0.0.1:6001'])
      const other = await announceRaw(t.port, { peer: 1 })
      const peers6 = Buffer.from(other.peers6)
      assert.equal(peers6.length, 18)
      assert.deepEqual(peers6.subarray(0, 16), Buffer.from('00000000000000000000000000000001', 'hex'))
      assert.equal(peers6.readUInt16BE(16), 6002)
    }
  } finally {
    await t.close()
  }
})

test('constructor rejects nonsense options', () => {
  assert.throws(() => new Tracker({ config: { intervalSeconds: 0 } }), { code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => new Tracker({ config: { peerTtlSeconds: -1 } }), { code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => new Tracker({ config: { maxPeersPerReply: 1.5 } }), { code: 'ERR_INVALID_ARGUMENT' })
})
