// A hostile host on the LAN, emulated on loopback: all of 127/8 is this machine's, and a
// socket bound to another address than 127.0.0.1 comes from "another host" as the tracker
// and the peer listeners count hosts (src/net-address.ts). Everything here is bounded and
// stopped by its owner.
import http from 'node:http'
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { encodeHandshake } from '../../src/swarm/wire-reader.ts'

const HANDSHAKE_LENGTH = 68
/** A closed connection is opened again after this long (renewed as fast as it closes, but not in a busy loop). */
const RENEW_DELAY_MS = 20

/** The i-th emulated attacker address (0-based), never 127.0.0.1. */
export function attackerAddress (i: number): string {
  return `127.0.${1 + Math.floor(i / 250)}.${2 + (i % 250)}`
}

/** Every byte percent-escaped: binary info hashes and peer ids in a query. */
export function escapeBytes (bytes: Uint8Array): string {
  return [...bytes].map(b => '%' + b.toString(16).padStart(2, '0')).join('')
}

export interface FloodResult { seconds: number; accepted: number; refused: number; lastFailure: string | undefined }

/**
 * `count` announces for `infoHash`, each with a fresh peer id and port, all from `source`,
 * `concurrency` at a time over kept-alive connections: one host filling a swarm.
 */
export async function floodAnnounces (trackerUrl: string, infoHash: Uint8Array, opts: { count: number; source: string; concurrency?: number }): Promise<FloodResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency ?? 16 })
  const started = Date.now()
  let accepted = 0
  let refused = 0
  let lastFailure: string | undefined
  let next = 0
  const one = async (): Promise<void> => {
    while (next < opts.count) {
      const i = next++
      const query = `info_hash=${escapeBytes(infoHash)}&peer_id=${escapeBytes(randomBytes(20))}&port=${10_000 + (i % 50_000)}&uploaded=0&downloaded=0&left=1000&event=started&numwant=0`
      const body = await get(`${trackerUrl}/announce?${query}`, { agent, localAddress: opts.source })
      const failure = /failure reason\d+:(.*)$/.exec(body.toString('latin1'))
      if (failure === null) accepted++
      else { refused++; lastFailure = failure[1] }
    }
  }
  try {
    await Promise.all(Array.from({ length: opts.concurrency ?? 16 }, one))
  } finally {
    agent.destroy()
  }
  return { seconds: (Date.now() - started) / 1000, accepted, refused, lastFailure }
}

/** One GET, its whole body; bounded by a 10 s timeout. */
export function get (url: string, opts: { agent?: http.Agent; localAddress?: string } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: opts.agent ?? false, localAddress: opts.localAddress, timeout: 10_000 }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve(Buffer.concat(chunks)))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)))
    req.on('error', reject)
  })
}

export interface SilentOptions {
  /** source addresses, each opening `perSource` connections */
  sources: string[]
  perSource: number
  /** send a valid handshake for this torrent first, then nothing */
  handshake?: Uint8Array
  /** open a connection again as soon as one closes, until stopped */
  renew: boolean
  /** ms between the connections of one source at the start (0: all at once) */
  staggerMs?: number
}

/**
 * Connections that say nothing (or a handshake, then nothing), held open and renewed as
 * the other side closes them: slots held for free.
 */
export class SilentConnections {
  /** connections opened, renewals included */
  opened = 0
  /** connections the other side answered with its handshake */
  answered = 0
  private readonly sockets = new Set<Socket>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private stopped = false

  constructor (private readonly host: string, private readonly port: number, private readonly opts: SilentOptions) {}

  get open (): number { return this.sockets.size }

  start (): void {
    const stagger = this.opts.staggerMs ?? 0
    for (const source of this.opts.sources) {
      for (let i = 0; i < this.opts.perSource; i++) {
        if (stagger === 0) this.openOne(source)
        else this.later(() => this.openOne(source), i * stagger)
      }
    }
  }

  stop (): void {
    this.stopped = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    for (const socket of this.sockets) socket.destroy()
    this.sockets.clear()
  }

  private later (fn: () => void, ms: number): void {
    const timer = setTimeout(() => { this.timers.delete(timer); fn() }, ms)
    this.timers.add(timer)
  }

  private openOne (source: string): void {
    if (this.stopped) return
    const socket = connect({ host: this.host, port: this.port, localAddress: source })
    this.opened++
    this.sockets.add(socket)
    let received = 0
    socket.on('connect', () => {
      if (this.opts.handshake !== undefined) socket.write(encodeHandshake(Buffer.from(this.opts.handshake), Buffer.concat([Buffer.from('-XX0000-'), randomBytes(12)])))
    })
    socket.on('data', (chunk: Buffer) => {
      if (received < HANDSHAKE_LENGTH && received + chunk.length >= HANDSHAKE_LENGTH) this.answered++
      received += chunk.length
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      this.sockets.delete(socket)
      if (this.opts.renew && !this.stopped) this.later(() => this.openOne(source), RENEW_DELAY_MS)
    })
  }
}
