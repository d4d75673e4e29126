// GET /metrics: Prometheus text that a scraper can read, with the figures an
// administrator graphs: nodes per image and phase, bytes served, reports, announces, errors.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImageServer } from '../src/server/image-server.ts'
import { makeTree } from './helpers/trees.ts'
import { postReport } from './helpers/reports.ts'

let dir: string | undefined
let server: ImageServer | undefined
after(async () => {
  await server?.stop()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

/** name{labels} -> value, every sample line; throws on a line that is not exposition text. */
function parseExposition (text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue
    const m = /^([a-z_:][a-z0-9_:]*(?:\{(?:[a-z_]+="(?:[^"\\\n]|\\["\\n])*",?)*\})?) (-?[0-9.e+]+)$/.exec(line)
    assert.ok(m !== null, `not a sample line: ${JSON.stringify(line)}`)
    samples.set(m[1], Number(m[2]))
  }
  return samples
}

test('/metrics counts nodes by image and phase, bytes served, reports, announces and failures by code', async () => {
  dir = await mkdtemp(join(tmpdir(), 'si-metrics-'))
  await makeTree(join(dir, 'src'), 1)
  server = new ImageServer({ repoDir: join(dir, 'repo'), host: '127.0.0.1', port: 0, peerPort: 0, seed: false })
  const version = await server.repo.add('golden', { from: join(dir, 'src'), compression: 'none' })
  await server.start()
  const url = `http://127.0.0.1:${server.httpPort}`
  const post = async (node: string, body: object): Promise<number> => (await postReport(url, node, body)).status
  assert.equal(await post('n1', { phase: 'downloading', image: 'golden@1', bytesFromServer: 100, bytesFromPeers: 900 }), 200)
  assert.equal(await post('n2', { phase: 'downloading', image: 'golden@1' }), 200)
  assert.equal(await post('n3', { phase: 'failed', image: 'golden@1', error: { code: 'ERR_DISK_TOO_SMALL', message: 'too small' } }), 200)
  assert.equal(await post('n4', { phase: 'booting', image: 'odd "name"\\with\nlines' }), 200)
  assert.equal(await post('n5', { phase: 'no-such-phase' }), 400)
  await (await fetch(`${url}/announce?info_hash=x`)).arrayBuffer()
  const tar = await (await fetch(`${url}/images/golden/1/image.tar`)).arrayBuffer()

  const res = await fetch(`${url}/metrics`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  const m = parseExposition(await res.text())
  assert.equal(m.get('si_nodes{image="golden@1",phase="downloading"}'), 2)
  assert.equal(m.get('si_nodes{image="golden@1",phase="failed"}'), 1)
  assert.equal(m.get('si_nodes{image="odd \\"name\\"\\\\with\\nlines",phase="booting"}'), 1, 'labels escaped')
  assert.equal(m.get('si_node_errors_total{code="ERR_DISK_TOO_SMALL"}'), 1)
  assert.equal(m.get('si_reports_total{outcome="accepted"}'), 4)
  assert.equal(m.get('si_reports_total{outcome="invalid"}'), 1)
  assert.equal(m.get('si_tracker_requests_total{kind="announce"}'), 1)
  assert.equal(m.get('si_http_payload_bytes_total'), tar.byteLength)
  assert.equal(m.get('si_node_received_bytes{source="peers"}'), 900)
  assert.ok((m.get('si_report_interval_seconds') ?? 0) > 0)
  assert.equal(version.version, 1)
})
