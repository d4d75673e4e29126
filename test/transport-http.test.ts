// The unicast transport against a real HTTP server on port 0 that misbehaves the way a
// crowded server link does: a connection cut mid-body, a connection starved of data,
// and a server that ignores range requests.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, statSync } from 'node:fs'
import http from 'node:http'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTorrent, parseTorrent, type Metainfo } from '../src/torrent/metainfo.ts'
import { parseRange } from '../src/server/range.ts'
import { deployHttp, MAX_HTTP_RESUMES } from '../src/deploy/transport-http.ts'
import { deployFromStream } from '../src/deploy/stream-transport.ts'
import { DEFAULT_STREAM_STALL_SECONDS } from '../src/deploy/config.ts'
import type { DeployEvent } from '../src/deploy/events.ts'
import { isSiError } from '../src/errors.ts'

const PIECE_LENGTH = 16 * 1024
const FILE_BYTES = 300 * 1024
/** Short, so that a starved connection is given up on within the test's time. */
const TEST_CONNECTION_STALL_MS = 500
const TEST_RESUME_DELAY_MS = 50

type Misbehaviour = (req: http.IncomingMessage, res: http.ServerResponse, payload: Buffer, requestNumber: number) => boolean

interface Fixture { dir: string; payload: Buffer; meta: Metainfo; server: http.Server; ranges: Array<string | undefined>; close: () => Promise<void> }

async function fixture (misbehave: Misbehaviour): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'si-http-'))
  const tree = join(dir, 'tree')
  mkdirSync(join(tree, 'etc'), { recursive: true })
  writeFileSync(join(tree, 'etc', 'hostname'), 'node\n')
  writeFileSync(join(tree, 'big.bin'), Buffer.alloc(FILE_BYTES, 7).map((_, i) => (i * 31) & 0xff))
  const tarPath = join(dir, 'image.tar')
  const tar = spawnSync('tar', ['-C', tree, '-cf', tarPath, '.'])
  assert.equal(tar.status, 0, String(tar.stderr))
  const payload = readFileSync(tarPath)
  const ranges: Array<string | undefined> = []
  const server = http.createServer((req, res) => {
    ranges.push(req.headers.range)
    if (misbehave(req, res, payload, ranges.length)) return
    serve(req, res, payload)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/image.tar`
  const meta = parseTorrent(await createTorrent({ file: tarPath, name: 'image.tar', pieceLength: PIECE_LENGTH, urlList: [url] }))
  return {
    dir, payload, meta, server, ranges,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** What si-server does: the whole file, or one range of it as 206. */
function serve (req: http.IncomingMessage, res: http.ServerResponse, payload: Buffer): void {
  const range = parseRange(req.headers.range, payload.length)
  if (range.kind === 'range') {
    res.writeHead(206, { 'content-length': range.end - range.start + 1, 'content-range': `bytes ${range.start}-${range.end}/${payload.length}` })
    res.end(payload.subarray(range.start, range.end + 1))
    return
  }
  res.writeHead(200, { 'content-length': payload.length })
  res.end(payload)
}

async function deploy (f: Fixture): Promise<{ events: DeployEvent[]; target: string }> {
  const events: DeployEvent[] = []
  const target = join(f.dir, 'target')
  await deployHttp({ metainfo: f.meta, target, stallSeconds: DEFAULT_STREAM_STALL_SECONDS, emit: e => { events.push(e) }, connectionStallMs: TEST_CONNECTION_STALL_MS, resumeDelayMs: TEST_RESUME_DELAY_MS })
  return { events, target }
}

function warnings (events: DeployEvent[]): string[] {
  return events.filter(e => e.type === 'warning').map(e => String((e as { message?: unknown }).message))
}

test('http transport: a connection cut mid-body is resumed with a range request, and the image arrives whole', async () => {
  const cutAt = 100 * 1024 + 123
  const f = await fixture((req, res, payload, n) => {
    if (n !== 1) return false
    res.writeHead(200, { 'content-length': payload.length })
    res.write(payload.subarray(0, cutAt), () => res.socket?.destroy())
    return true
  })
  try {
    const { events, target } = await deploy(f)
    assert.equal(f.ranges[0], undefined)
    const resumedFrom = Number(/^bytes=(\d+)-$/.exec(f.ranges[1] ?? '')?.[1])
    assert.ok(resumedFrom > 0 && resumedFrom <= cutAt, `second request: ${String(f.ranges[1])}`)
    assert.equal(f.ranges.length, 2, 'one resume was enough')
    assert.equal(statSync(join(target, 'big.bin')).size, FILE_BYTES)
    assert.equal(readFileSync(join(target, 'etc', 'hostname'), 'utf8'), 'node\n')
    assert.match(warnings(events).join('\n'), /connection lost after \d+ of \d+ bytes .*resuming from there \(attempt 1 of/)
    assert.ok(events.some(e => e.type === 'done'))
  } finally {
    await f.close()
  }
})

test('http transport: a connection that stops delivering is replaced, not waited on for the whole stall limit', async () => {
  const f = await fixture((req, res, payload, n) => {
    if (n !== 1) return false
    // Headers and a little data, then nothing: a flow starved in a full queue.
    res.writeHead(200, { 'content-length': payload.length })
    res.write(payload.subarray(0, 5_000))
    return true
  })
  try {
    const started = Date.now()
    const { events, target } = await deploy(f)
    assert.ok(Date.now() - started < 20_000)
    assert.equal(f.ranges[1], 'bytes=5000-')
    assert.equal(statSync(join(target, 'big.bin')).size, FILE_BYTES)
    assert.match(warnings(events).join('\n'), /no data for 0.5 s on this connection/)
  } finally {
    await f.close()
  }
})

test('http transport: a server that answers a resume with the whole file again is refused with a clear error', async () => {
  const f = await fixture((req, res, payload, n) => {
    if (n === 1) {
      res.writeHead(200, { 'content-length': payload.length })
      res.write(payload.subarray(0, 50_000), () => res.socket?.destroy())
      return true
    }
    // Range ignored: 200 and the whole body, which would repeat bytes already extracted.
    res.writeHead(200, { 'content-length': payload.length })
    res.end(payload)
    return true
  })
  try {
    await assert.rejects(deploy(f), err => isSiError(err, 'ERR_HTTP_STATUS') && /answered 200 to a request for bytes \d+- \(a resume needs 206\)/.test(err.message))
    assert.equal(f.ranges.length, 2, 'no endless retrying of a server that cannot resume')
  } finally {
    await f.close()
  }
})

test('http transport: a connection closed before any answer (a kept-alive one the server just timed out) is tried again', async () => {
  const f = await fixture((req, _res, _payload, n) => {
    if (n !== 1) return false
    req.socket.destroy()
    return true
  })
  try {
    const { events, target } = await deploy(f)
    assert.deepEqual(f.ranges, [undefined, undefined], 'the whole file asked for twice, no range')
    assert.equal(statSync(join(target, 'big.bin')).size, FILE_BYTES)
    assert.match(warnings(events).join('\n'), /cannot reach http:\/\/127\.0\.0\.1:\d+\/image\.tar: .*; trying again \(attempt 1 of/)
  } finally {
    await f.close()
  }
})

test('http transport: a server that never answers fails with ERR_SERVER_UNREACHABLE after a bounded number of tries', async () => {
  const f = await fixture((req) => { req.socket.destroy(); return true })
  try {
    await assert.rejects(deploy(f), err => isSiError(err, 'ERR_SERVER_UNREACHABLE'))
    assert.equal(f.ranges.length, MAX_HTTP_RESUMES + 1)
  } finally {
    await f.close()
  }
})

test('stream transports: an image whose last piece holds only the end-of-archive marker\'s second block still completes when that piece comes late', async () => {
  // 1 image in 256 at 128 KiB pieces ends so; udp-receiver hands the last bytes over after
  // a pause. The extractor is done at the first zero block and must not cut the stream
  // off before the last piece is verified.
  const BLOCK = 512
  const f = await fixture(() => false)
  try {
    let end = f.payload.length
    while (end >= BLOCK && f.payload.subarray(end - BLOCK, end).every(b => b === 0)) end -= BLOCK
    let length = end + 2 * BLOCK
    while (length % PIECE_LENGTH !== BLOCK) length += BLOCK
    const image = Buffer.concat([f.payload.subarray(0, end), Buffer.alloc(length - end)])
    const imagePath = join(f.dir, 'late-tail.tar')
    writeFileSync(imagePath, image)
    const meta = parseTorrent(await createTorrent({ file: imagePath, name: 'late-tail.tar', pieceLength: PIECE_LENGTH }))
    const target = join(f.dir, 'late-tail')
    const source = Readable.from((async function * () {
      yield image.subarray(0, length - BLOCK)
      await sleep(300)
      yield image.subarray(length - BLOCK)
    })())
    const result = await deployFromStream({ metainfo: meta, target, stallSeconds: DEFAULT_STREAM_STALL_SECONDS, emit: () => {}, transport: 'multicast' },
      async () => ({ stream: source, label: 'a slow source', close: () => source.destroy() }))
    assert.equal(result.figures.verifiedBytes, length)
    assert.equal(readFileSync(join(target, 'etc', 'hostname'), 'utf8'), 'node\n')
  } finally {
    await f.close()
  }
})
