// One attacker on the cluster's LAN, run by `make reliability` inside a node's namespace
// (a compromised node): it attacks until stopped (SIGTERM) or its time is up, then prints
// one JSON line saying what it did.
//   node --import tsx scripts/reliability/attack.ts KIND --server URL --image NAME@V --source ADDR [--seconds N]
// KIND: liar (corrupt data under a new peer id and port after each ban), tracker-flood
// (thousands of peer ids from one address), silent (connections that hold listener slots,
// with and without a handshake), fleet-flood (reports for thousands of invented nodes).
import { copyFile, mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { option } from '../../src/config/options.ts'
import { decimal, nonEmpty, oneOf } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'
import { SiError } from '../../src/errors.ts'
import { parseTorrent, type Metainfo } from '../../src/torrent/metainfo.ts'
import { PeerListener } from '../../src/swarm/peer-listener.ts'
import { PieceStore } from '../../src/swarm/piece-store.ts'
import { Swarm } from '../../src/swarm/swarm.ts'
import { announce, type PeerAddress } from '../../src/swarm/tracker-client.ts'
import { requestCredential } from '../../src/deploy/credential-client.ts'
import { REPORT_AUTH_HEADER, reportAuth } from '../../src/formats/node-auth.ts'
import { SilentConnections, floodAnnounces } from '../../test/helpers/attacker.ts'
import { runIfMain, sleep } from '../bench/exec.ts'

export const ATTACKS = ['liar', 'tracker-flood', 'silent', 'fleet-flood'] as const
export type AttackKind = typeof ATTACKS[number]

/** A liar identity that no peer talks to for this long takes a new one (it was banned, or is ignored). */
const LIAR_SHUNNED_MS = 3_000
const LIAR_POLL_MS = 200
/** Peer ids per flood round, as in the attack, and the pause between rounds. */
const FLOOD_ANNOUNCES = 5_000
const FLOOD_PAUSE_MS = 5_000
/** Pre-handshake connections to the seeder, and handshaken ones to a few agents. */
const SILENT_PENDING = 256
const SILENT_HANDSHAKEN = 100
const SILENT_TARGETS = 3
/** Invented nodes per fleet-flood round, each with its own credential. */
const FLEET_NAMES = 2_000
const FLEET_CONCURRENCY = 16
/** The seeder's port in the emulated cluster (scripts/bench/image-server.ts). */
const PEER_PORT = 6881

const OPTIONS = {
  server: option({ flag: 'server', arg: 'URL', help: 'the image server', parse: nonEmpty('a URL') }),
  image: option({ flag: 'image', arg: 'NAME@V', help: 'the image being deployed', parse: nonEmpty('an image reference') }),
  source: option({ flag: 'source', arg: 'ADDR', help: 'this host\'s address', parse: nonEmpty('an address') }),
  payload: option({ flag: 'payload', arg: 'FILE', help: 'the image\'s payload (liar: what it corrupts and serves)', parse: nonEmpty('a file') }),
  seconds: option({ flag: 'seconds', arg: 'N', help: 'stop after this long', default: 600, parse: decimal(1, 86_400) }),
  kind: option({ flag: 'kind', arg: ATTACKS.join('|'), help: 'the attack', parse: oneOf(ATTACKS) })
}
const USAGE = commandHelp(['node --import tsx scripts/reliability/attack.ts --kind KIND --server URL --image NAME@V --source ADDR [options]'], OPTIONS, {
  intro: 'One attacker for make reliability: attacks until SIGTERM or --seconds, then prints what it did as JSON.'
})

interface Context { server: string; meta: Metainfo; source: string; payload?: string; signal: AbortSignal; work: string }

async function torrentOf (server: string, image: string): Promise<Metainfo> {
  const [name, version] = image.split('@')
  const res = await fetch(`${server}/images/${encodeURIComponent(name)}/${version}/image.torrent`)
  if (!res.ok) throw new SiError('ERR_BENCH', `torrent of ${image}: HTTP ${res.status}`)
  return parseTorrent(new Uint8Array(await res.arrayBuffer()))
}

/** A copy of the payload with one byte flipped in every piece: every piece it serves fails its check. */
async function corruptPayload (ctx: Context): Promise<string> {
  const file = join(ctx.work, 'corrupt')
  if (ctx.payload === undefined) throw new SiError('ERR_INVALID_ARGUMENT', 'the liar needs --payload FILE, the image\'s payload to corrupt')
  await copyFile(ctx.payload, file)
  const handle = await open(file, 'r+')
  try {
    const byte = Buffer.alloc(1)
    for (let off = 100; off < ctx.meta.length; off += ctx.meta.pieceLength) {
      await handle.read(byte, 0, 1, off)
      byte[0] ^= 0xff
      await handle.write(byte, 0, 1, off)
    }
  } finally {
    await handle.close()
  }
  return file
}

async function liar (ctx: Context): Promise<Record<string, unknown>> {
  const file = await corruptPayload(ctx)
  let identities = 0
  let uploaded = 0
  while (!ctx.signal.aborted) {
    identities++
    const listener = new PeerListener()
    await listener.start(ctx.source, 0)
    const store = await PieceStore.openComplete(file, ctx.meta)
    const swarm = new Swarm({ infoHash: ctx.meta.infoHash, peerId: Buffer.concat([Buffer.from('-LI0000-'), randomBytes(12)]), store, listener, announceUrls: [`${ctx.server}/announce`], connectWhenComplete: true })
    swarm.start()
    let lastBusy = Date.now()
    while (!ctx.signal.aborted && Date.now() - lastBusy < LIAR_SHUNNED_MS) {
      await sleep(LIAR_POLL_MS)
      if (swarm.stats().peers > 0) lastBusy = Date.now()
    }
    uploaded += swarm.stats().uploaded
    await swarm.stop()
    await listener.stop()
    await store.close()
  }
  return { identities, uploadedBytes: uploaded }
}

async function trackerFlood (ctx: Context): Promise<Record<string, unknown>> {
  let rounds = 0
  let accepted = 0
  let refused = 0
  while (!ctx.signal.aborted) {
    const r = await floodAnnounces(`${ctx.server}`, ctx.meta.infoHash, { count: FLOOD_ANNOUNCES, source: ctx.source })
    rounds++
    accepted += r.accepted
    refused += r.refused
    await sleep(FLOOD_PAUSE_MS)
  }
  return { rounds, announces: accepted + refused, accepted, refused }
}

/** The agents' listeners, as any peer learns them: from the tracker. */
async function agentsFromTracker (ctx: Context): Promise<PeerAddress[]> {
  const serverHost = new URL(ctx.server).hostname
  const reply = await announce(`${ctx.server}/announce`, { infoHash: ctx.meta.infoHash, peerId: Buffer.concat([Buffer.from('-SL0000-'), randomBytes(12)]), port: 1, uploaded: 0, downloaded: 0, left: ctx.meta.length, numwant: 50 })
  return reply.peers.filter(p => p.host !== serverHost && p.host !== ctx.source)
}

async function silent (ctx: Context): Promise<Record<string, unknown>> {
  const host = new URL(ctx.server).hostname
  const targets = (await agentsFromTracker(ctx)).slice(0, SILENT_TARGETS)
  const attacks = [
    new SilentConnections(host, PEER_PORT, { sources: [ctx.source], perSource: SILENT_PENDING, renew: true }),
    ...targets.map(peer => new SilentConnections(peer.host, peer.port, { sources: [ctx.source], perSource: SILENT_HANDSHAKEN, handshake: ctx.meta.infoHash, renew: true }))
  ]
  for (const a of attacks) a.start()
  await new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
  for (const a of attacks) a.stop()
  return { agentsTargeted: targets.length, opened: attacks.reduce((n, a) => n + a.opened, 0), answered: attacks.reduce((n, a) => n + a.answered, 0) }
}

async function fleetFlood (ctx: Context): Promise<Record<string, unknown>> {
  const statuses: Record<string, number> = {}
  let next = 0
  const one = async (): Promise<void> => {
    while (!ctx.signal.aborted) {
      const node = `ghost-${next++ % FLEET_NAMES}`
      const body = JSON.stringify({ phase: 'done', step: 'installed', progress: 1, image: 'invented@1', log: 'x'.repeat(4096) })
      let status = 'error'
      try {
        const credential = await requestCredential(ctx.server, { node, macs: [] }, { attempts: 1 })
        const res = await fetch(`${ctx.server}/api/nodes/${node}/events`, { method: 'POST', body, headers: { 'content-type': 'application/json', [REPORT_AUTH_HEADER]: reportAuth(credential, node, body) }, signal: ctx.signal })
        status = String(res.status)
      } catch (err) {
        status = (err as { code?: string }).code ?? 'error'
      }
      statuses[status] = (statuses[status] ?? 0) + 1
    }
  }
  await Promise.all(Array.from({ length: FLEET_CONCURRENCY }, one))
  return { statuses }
}

const RUN: Record<AttackKind, (ctx: Context) => Promise<Record<string, unknown>>> = { liar, 'tracker-flood': trackerFlood, silent, 'fleet-flood': fleetFlood }

async function main (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  if (o.kind === undefined || o.server === undefined || o.image === undefined || o.source === undefined) throw new SiError('ERR_INVALID_ARGUMENT', '--kind, --server, --image and --source are required')
  const stop = new AbortController()
  process.once('SIGTERM', () => stop.abort())
  process.once('SIGINT', () => stop.abort())
  const timer = setTimeout(() => stop.abort(), o.seconds * 1000)
  const work = await mkdtemp(join(tmpdir(), 'si-attack-'))
  try {
    const meta = await torrentOf(o.server, o.image)
    const did = await RUN[o.kind]({ server: o.server, meta, source: o.source, payload: o.payload, signal: stop.signal, work })
    process.stdout.write(JSON.stringify({ attack: o.kind, ...did }) + '\n')
    return 0
  } finally {
    clearTimeout(timer)
    await rm(work, { recursive: true, force: true })
  }
}

runIfMain(import.meta.url, main, line => process.stderr.write(`attack: ${line}\n`))
