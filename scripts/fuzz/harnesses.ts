// One harness per parser that reads network or disk input: torrents and bencode, tracker
// requests (server side) and replies (agent side), the peer wire, tar and pax archives
// (read, and extracted into a jail that must hold), the kernel command line, plans, and
// the server's HTTP routes. Each harness makes its own valid seeds from the product's own
// writers, so the mutations start from inputs that reach deep into each parser.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, linkSync, writeFileSync, openSync, closeSync, ftruncateSync, writeSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { decodeBencode, encodeBencode } from '../../src/torrent/bencode.ts'
import { createTorrent, parseTorrent, withTrackers } from '../../src/torrent/metainfo.ts'
import { parseRawQuery } from '../../src/tracker/query.ts'
import { parseAnnounceRequest } from '../../src/tracker/announce-request.ts'
import { parseScrapeRequest } from '../../src/tracker/scrape-request.ts'
import { announce, scrape } from '../../src/swarm/tracker-client.ts'
import { PeerWire } from '../../src/swarm/wire.ts'
import { encodeHandshake, encodeMessageHead, MESSAGE } from '../../src/swarm/wire-reader.ts'
import { readTar } from '../../src/image/tar-reader.ts'
import { packDirectory } from '../../src/image/pack.ts'
import { compressToFile } from '../../src/image/compression.ts'
import { extractTar } from '../../src/deploy/extract.ts'
import { resolveConfig, reportTarget } from '../../src/install/config.ts'
import { PlanStore, DEFAULT_PLAN } from '../../src/server/plans.ts'
import { ImageServer } from '../../src/server/image-server.ts'
import type { Harness } from './engine.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const HASH = Buffer.alloc(20, 0x11)
const PEER_ID = Buffer.from('-SI0100-fuzzfuzzfuzz')
const PIECES = 37
const HTTP_ANSWER_MS = 2_000
/** A raw request that gets no answer in this time is taken as one the server waits on (a body still to come). */
const HTTP_QUIET_MS = 500

function scratch (name: string): string {
  return mkdtempSync(join(tmpdir(), `si-fuzz-${name}-`))
}

/** A small tree with what archives carry: directories, a long name, links, a hole, a FIFO-free set of modes. */
function fixtureTree (dir: string): void {
  mkdirSync(join(dir, 'etc/ssh'), { recursive: true })
  mkdirSync(join(dir, 'usr/bin'), { recursive: true })
  writeFileSync(join(dir, 'etc/hostname'), 'node01\n')
  writeFileSync(join(dir, 'etc/ssh/sshd_config'), 'PermitRootLogin no\n'.repeat(40), { mode: 0o600 })
  writeFileSync(join(dir, 'usr/bin/tool'), Buffer.alloc(3000, 0x90), { mode: 0o4755 })
  writeFileSync(join(dir, `usr/${'long-name-'.repeat(14)}`), 'a long path\n')
  symlinkSync('../usr/bin/tool', join(dir, 'etc/tool-link'))
  symlinkSync('/usr/bin', join(dir, 'bin'))
  linkSync(join(dir, 'etc/hostname'), join(dir, 'etc/hostname-hard'))
  const fd = openSync(join(dir, 'usr/sparse.img'), 'w')
  writeSync(fd, Buffer.from('head'), 0, 4, 0)
  writeSync(fd, Buffer.from('tail'), 0, 4, 96 * 1024)
  ftruncateSync(fd, 128 * 1024)
  closeSync(fd)
}

async function fixtureArchives (): Promise<Buffer[]> {
  const dir = scratch('tree')
  try {
    fixtureTree(join(dir, 'tree'))
    const plain = join(dir, 'plain.tar')
    await packDirectory(join(dir, 'tree'), plain)
    const zst = join(dir, 'image.tar.zst')
    const out = compressToFile('zstd', zst)
    await Promise.all([packDirectory(join(dir, 'tree'), out.input), out.done])
    return [readFileSync(plain), readFileSync(zst)]
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function sampleTorrents (): Promise<Buffer[]> {
  const dir = scratch('torrent')
  try {
    const file = join(dir, 'image.tar')
    writeFileSync(file, Buffer.alloc(70_000, 7))
    const t = await createTorrent({ file, name: 'image.tar', pieceLength: 16384, announce: ['http://10.0.0.1:8470/announce'], urlList: ['http://10.0.0.1:8470/images/a/1/image.tar'] })
    return [t, withTrackers(t, { announce: ['http://a/announce', 'http://b/announce'], urlList: [] })]
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The bytes as a stream source, as a socket or a file would give them. */
async function * chunks (input: Buffer): AsyncGenerator<Buffer> { yield input }

const drain = async (input: Buffer): Promise<void> => {
  for await (const member of readTar(chunks(input))) for await (const segment of member.body()) void segment
}

/** A value as text with dictionary keys in order, to compare values whatever their key order. */
function canonical (v: unknown): string {
  if (v instanceof Uint8Array) return `b${Buffer.from(v).toString('hex')}`
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (typeof v === 'object' && v !== null) return `{${Object.keys(v).sort().map(k => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`
  return JSON.stringify(v)
}

export const bencode: Harness = {
  name: 'bencode',
  what: 'decodeBencode: torrents, tracker replies, extended handshakes',
  expectedCodes: ['ERR_INVALID_BENCODE'],
  seeds: async () => [...await sampleTorrents(), encodeBencode({ interval: 15, peers: Buffer.alloc(12, 1), complete: 3, incomplete: 4 }), encodeBencode({ m: { ut_pex: 1 }, p: 6881, reqq: 2048, v: 'swarmimager 0.1.0' }), Buffer.from('li-5ei0eld1:a1:beee')],
  run: input => {
    const value = decodeBencode(input)
    // What decodes must encode and decode back to the same value (keys come back sorted).
    if (canonical(decodeBencode(encodeBencode(value))) !== canonical(value)) throw new Error('a decoded value does not survive encode and decode')
  }
}

export const torrent: Harness = {
  name: 'torrent',
  what: 'parseTorrent: metainfo files',
  expectedCodes: ['ERR_INVALID_TORRENT'],
  seeds: sampleTorrents,
  run: input => {
    const meta = parseTorrent(input)
    if (meta.pieceHashes.length !== meta.pieceCount || meta.pieceCount !== Math.ceil(meta.length / meta.pieceLength)) throw new Error('piece count does not match the length')
    if (meta.name.includes('/') || meta.name === '..') throw new Error(`unsafe name accepted: ${meta.name}`)
  }
}

const announceQuery = (extra = ''): string => `info_hash=${'%11'.repeat(20)}&peer_id=-SI0100-fuzzfuzzfuzz&port=6881&uploaded=0&downloaded=0&left=1000&compact=1&event=started${extra}`

export const trackerRequest: Harness = {
  name: 'tracker-request',
  what: 'the tracker\'s announce and scrape query parsers',
  expectedCodes: ['ERR_TRACKER_REQUEST'],
  seeds: () => [announceQuery(), announceQuery('&numwant=50&no_peer_id=1&key=abc'), `info_hash=${'%11'.repeat(20)}&info_hash=${'%22'.repeat(20)}`].map(q => Buffer.from(q, 'latin1')),
  run: input => {
    const params = parseRawQuery(input.toString('latin1'))
    if (params.has('peer_id')) parseAnnounceRequest(params, { defaultNumwant: 50, maxNumwant: 200 })
    else parseScrapeRequest(params)
  }
}

/** A tracker on loopback that answers every request with the case's bytes. */
function replyingTracker (): { body: Buffer<ArrayBufferLike>; url: () => string; start: () => Promise<void>; close: () => Promise<void> } {
  const state: { body: Buffer<ArrayBufferLike> } = { body: Buffer.alloc(0) }
  const server = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(state.body) })
  return {
    get body () { return state.body },
    set body (b: Buffer<ArrayBufferLike>) { state.body = b },
    url: () => { const a = server.address(); return `http://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}/announce` },
    start: () => new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve())),
    close: () => new Promise(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}

export function trackerReply (): Harness {
  const tracker = replyingTracker()
  let started = false
  return {
    name: 'tracker-reply',
    what: 'the agent\'s announce and scrape reply parsers, over HTTP',
    expectedCodes: ['ERR_TRACKER_REPLY'],
    seeds: () => [
      encodeBencode({ interval: 15, 'min interval': 5, complete: 2, incomplete: 3, peers: Buffer.from([10, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0x1a, 0xe2]) }),
      encodeBencode({ interval: 15, peers: [{ ip: '10.0.0.3', port: 6881, 'peer id': PEER_ID }], peers6: Buffer.alloc(18, 1) }),
      encodeBencode({ files: new Map([[HASH.toString('latin1'), { complete: 1, incomplete: 2, downloaded: 3 }]]) })
    ],
    run: async input => {
      if (!started) { await tracker.start(); started = true }
      tracker.body = input
      // The same bytes as an announce reply, then as a scrape reply: refused only if both refuse.
      let refusal: unknown
      try {
        const result = await announce(tracker.url(), { infoHash: HASH, peerId: PEER_ID, port: 6881, uploaded: 0, downloaded: 0, left: 1 }, { timeoutMs: HTTP_ANSWER_MS })
        for (const p of result.peers) if (!(p.port >= 1 && p.port <= 65535) || p.host === '') throw new Error(`bad peer accepted: ${JSON.stringify(p)}`)
        return
      } catch (err) { refusal = err }
      try {
        const counts = await scrape(tracker.url(), HASH, { timeoutMs: HTTP_ANSWER_MS })
        if (![counts.complete, counts.incomplete, counts.downloaded].every(n => Number.isSafeInteger(n) && n >= 0)) throw new Error(`bad scrape counts accepted: ${JSON.stringify(counts)}`)
      } catch { throw refusal }
    },
    close: async () => { if (started) await tracker.close() }
  }
}

/** A socket that takes what the wire writes and drops it. */
function sinkSocket (): Socket {
  return { destroyed: false, cork () {}, uncork () {}, write () { return true } } as unknown as Socket
}

function wireStream (): Buffer {
  const msg = (id: number, fields: number[] = [], payload = Buffer.alloc(0)): Buffer => Buffer.concat([encodeMessageHead(id, fields, payload.length), payload])
  return Buffer.concat([
    encodeHandshake(HASH, PEER_ID),
    msg(MESSAGE.extended, [], Buffer.concat([Buffer.from([0]), encodeBencode({ m: { ut_pex: 1 }, p: 6881, reqq: 250 })])),
    msg(MESSAGE.bitfield, [], Buffer.from([0xff, 0xff, 0xff, 0xff, 0xe0])),
    msg(MESSAGE.have, [3]),
    msg(MESSAGE.interested),
    msg(MESSAGE.unchoke),
    msg(MESSAGE.request, [1, 0, 16384]),
    msg(MESSAGE.cancel, [1, 0, 16384]),
    msg(MESSAGE.piece, [2, 0], Buffer.alloc(64, 2)),
    msg(MESSAGE.extended, [], Buffer.concat([Buffer.from([1]), encodeBencode({ added: Buffer.from([10, 0, 0, 9, 0x1a, 0xe1]), 'added.f': Buffer.from([0]) })])),
    Buffer.alloc(4)
  ])
}

export const peerWire: Harness = {
  name: 'peer-wire',
  what: 'the peer wire: handshake, framing, every message, extended handshake, PEX',
  expectedCodes: ['ERR_PEER_PROTOCOL'],
  seeds: () => [wireStream()],
  run: input => {
    const wire = new PeerWire(sinkSocket())
    wire.setPieceCount(PIECES)
    wire.handshake(HASH, PEER_ID)
    try {
      // Cut into segments as TCP would.
      for (let at = 0; at < input.length;) {
        const n = 1 + ((input[at] * 131 + at) % 1500)
        wire.feed(input.subarray(at, at + n))
        at += n
      }
    } finally {
      wire.close()
    }
  }
}

export const tarRead: Harness = {
  name: 'tar-read',
  what: 'the tar and pax reader (headers, pax records, long names, sparse maps)',
  expectedCodes: ['ERR_ARCHIVE', 'ERR_UNSAFE_ARCHIVE'],
  maxInputBytes: 1024 * 1024,
  seeds: async () => [(await fixtureArchives())[0]],
  run: drain
}

/** Extraction into a jail inside a sandbox that also holds a sentinel: nothing may land beside it. */
export function tarExtract (): Harness {
  const sandbox = scratch('extract')
  const sentinel = join(sandbox, 'outside', 'sentinel')
  mkdirSync(join(sandbox, 'outside'))
  writeFileSync(sentinel, 'untouched')
  const jail = join(sandbox, 'jail')
  return {
    name: 'tar-extract',
    what: 'extraction of archives (plain and zstd) into a jail',
    expectedCodes: ['ERR_ARCHIVE', 'ERR_UNSAFE_ARCHIVE', 'ERR_TOOL_FAILED'],
    maxInputBytes: 1024 * 1024,
    seeds: fixtureArchives,
    run: async input => {
      rmSync(jail, { recursive: true, force: true })
      mkdirSync(jail)
      try {
        await extractTar(chunks(input), jail)
      } finally {
        const beside = readdirSync(sandbox).sort().join(',')
        if (beside !== 'jail,outside' || readdirSync(join(sandbox, 'outside')).join(',') !== 'sentinel' || readFileSync(sentinel, 'utf8') !== 'untouched') {
          throw new Error(`extraction wrote outside its target: the sandbox holds ${beside}`)
        }
      }
    },
    close: () => rmSync(sandbox, { recursive: true, force: true })
  }
}

export const kernelCmdline: Harness = {
  name: 'kernel-cmdline',
  what: 'si-agent install\'s configuration from the kernel command line',
  expectedCodes: ['ERR_CONFIG'],
  seeds: () => [
    'BOOT_IMAGE=/vmlinuz initrd=initrd.img si.server=http://10.0.0.1:8470 si.image=compute@3 si.seed_wait=swarm si.max_peers=40 quiet',
    'IMAGESERVER=10.0.0.5 IMAGENAME=compute BITTORRENT_STAGING=/tmp BITTORRENT_SEED_WAIT=y BITTORRENT_UPLOAD_MIN=500 BITTORRENT_POLLING_TIME=5 MONITOR_SERVER=10.0.0.9 MONITOR_PORT=8181',
    'si.server=[fd00::1]:8470 si.node=node7 si.finish=kexec si.upload_limit=400mbit si.transport=auto si.stall=60'
  ].map(t => Buffer.from(t)),
  run: input => {
    const cmdline = input.toString('utf8')
    reportTarget({ cmdline }) // never throws: it only looks for where to report
    resolveConfig({ cmdline })
  }
}

export function plans (): Harness {
  const dir = scratch('plans')
  const store = new PlanStore(dir)
  return {
    name: 'plans',
    what: 'plan files as the server reads them (default.json)',
    expectedCodes: ['ERR_PLAN'],
    seeds: () => ['default.json', 'groups/storage.json', 'hosts/node001.json'].map(f => readFileSync(join(ROOT, 'examples/plans', f))),
    run: async input => {
      writeFileSync(join(dir, DEFAULT_PLAN), input)
      await store.select('node01', ['52:54:00:00:00:01'])
    },
    close: () => rmSync(dir, { recursive: true, force: true })
  }
}

/** Raw HTTP requests against a real image server in this process: every one answered, none with a 5xx, the server alive at the end. */
export function httpRoutes (): Harness {
  const dir = scratch('http')
  let server: ImageServer | undefined
  // Written, not half-closed: Node's HTTP server drops a request whose client has shut its
  // side down. The case's bytes are followed by an empty line, so that a request cut short
  // still ends; the status line and headers are all the check needs.
  const request = (port: number, bytes: Buffer): Promise<string> => new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    const done = (): void => { clearTimeout(timer); socket.destroy(); resolve(answer) }
    const timer = setTimeout(done, HTTP_QUIET_MS)
    socket.on('data', c => { answer += c.toString('latin1'); if (answer.includes('\r\n\r\n')) done() })
    socket.on('error', done)
    socket.on('close', done)
    socket.write(Buffer.concat([bytes, Buffer.from('\r\n\r\n')]))
  })
  const requests = [
    'GET /api/images HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'GET /images/golden/1/image.torrent HTTP/1.1\r\nHost: 10.0.0.1:8470\r\nConnection: close\r\n\r\n',
    'GET /images/golden/1/image.tar HTTP/1.1\r\nHost: x\r\nRange: bytes=100-200\r\nConnection: close\r\n\r\n',
    `GET /announce?${announceQuery()} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    `GET /scrape?info_hash=${'%11'.repeat(20)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    'GET /api/plan?node=node01&mac=52:54:00:00:00:01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'GET /boot/boot.ipxe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'POST /api/nodes/node01/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 41\r\nConnection: close\r\n\r\n{"type":"phase","phase":"download","x":1}'
  ]
  return {
    name: 'http-routes',
    what: 'the image server\'s HTTP routes, as raw requests',
    expectedCodes: [],
    seeds: async () => {
      const src = join(dir, 'src')
      fixtureTree(src)
      server = new ImageServer({ repoDir: join(dir, 'repo'), host: '127.0.0.1', port: 0, peerPort: 0, seed: false })
      await server.repo.add('golden', { from: src, compression: 'none' })
      await server.start()
      return requests.map(r => Buffer.from(r, 'latin1'))
    },
    run: async input => {
      const answer = await request(server!.httpPort, input)
      if (/^HTTP\/1\.[01] 5\d\d/.test(answer)) throw new Error(`server error: ${answer.split('\r\n')[0]}`)
    },
    close: async () => {
      try {
        if (server !== undefined) {
          const alive = await request(server.httpPort, Buffer.from(requests[0], 'latin1'))
          if (!alive.startsWith('HTTP/1.1 200')) throw new Error(`the server no longer answers after the run: ${alive.slice(0, 80)}`)
        }
      } finally {
        await server?.stop()
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
}

/** Every harness, fresh (some hold a server or a scratch directory until closed). */
export function allHarnesses (): Harness[] {
  return [bencode, torrent, trackerRequest, trackerReply(), peerWire, tarRead, tarExtract(), kernelCmdline, plans(), httpRoutes()]
}

