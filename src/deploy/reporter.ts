// Tells the image server how this node is doing: a snapshot of its state (identity,
// hardware, image, phase, progress, rates, bytes from the server and from peers, the
// last error and the console's tail on failure), posted at each step and, while only
// figures change, at the interval the server asks for in its reply: the server
// lengthens it as the fleet grows, so a thousand nodes cost it little.
//
// Best effort: a server that does not answer never slows down or fails an install.
// Each post is bounded, step changes wait in a short queue, figures are coalesced.
// Each post is signed with the node's credential (the server refuses others); posts
// wait for the credential to come.
import { randomBytes } from 'node:crypto'
import type { AgentEvent, ProgressFigures } from './events.ts'
import { httpRequest } from '../http-client.ts'
import { REPORT_AUTH_HEADER, reportAuth } from '../formats/node-auth.ts'
import { FIRMWARES, REPORT_LIMITS, clip, fleetPhaseOf, parseReportAnswer, tailBytes, type Firmware, type NodeReport, type SystemFacts } from '../formats/node-report.ts'
import { hardwareSummary, nodeIdentity } from './node-facts.ts'

export const REPORT_TIMEOUT_MS = 3_000
/** Until the server says otherwise. */
export const DEFAULT_REPORT_INTERVAL_SECONDS = 2
/** What the agent accepts from a server's answer. */
const INTERVAL_BOUNDS_SECONDS = { min: 0.5, max: 120 }
/** The final reports of a run wait at most this long for a server that does not answer. */
export const FLUSH_TIMEOUT_MS = 6_000
/** Step changes kept while the server is slow: a node has about twenty; the oldest go first. */
const MAX_QUEUED_STEPS = 32
/** The server answers a report with a short acknowledgement; anything longer is not read. */
const MAX_REPORT_ANSWER_BYTES = 64 * 1024

export interface ReporterOptions {
  /** the image server (or monitor) base URL */
  server: string
  node: string
  /**
   * Under `si-agent install` a download's `done` is not the end: the install goes on
   * (overrides, boot loader) and its own `installed` event ends the run.
   */
  install?: boolean
  intervalSeconds?: number
  /** the node's credential (credential-client.ts); undefined when it could not be had */
  credential?: Promise<string | undefined>
  /** identity and hardware, collected once (default: this machine's) */
  facts?: () => Pick<NodeReport, 'identity' | 'hardware'>
}

export class ServerReporter {
  private readonly url: string
  private readonly opts: ReporterOptions
  private state: NodeReport
  private readonly steps: string[] = []
  private journal = ''
  private dirty = false
  private intervalMs: number
  private lastSent = 0
  private sending: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined

  constructor (opts: ReporterOptions) {
    this.opts = opts
    this.url = `${opts.server.replace(/\/+$/, '')}/api/nodes/${encodeURIComponent(opts.node)}/events`
    this.intervalMs = (opts.intervalSeconds ?? DEFAULT_REPORT_INTERVAL_SECONDS) * 1000
    const facts = (opts.facts ?? (() => ({ identity: nodeIdentity(), hardware: hardwareSummary() })))()
    this.state = { phase: 'booting', run: randomBytes(8).toString('hex'), ...facts }
  }

  get interval (): number { return this.intervalMs / 1000 }

  sink (): (event: AgentEvent) => void {
    return event => { this.apply(event) }
  }

  apply (event: AgentEvent): void {
    switch (event.type) {
      case 'phase': {
        this.log(`${event.phase}${event.detail !== undefined ? `: ${event.detail}` : ''}`)
        this.enterStep(event.phase, event.detail)
        return
      }
      case 'image':
        // An install fetches its overrides after the image: the run is the image's.
        if (this.state.infoHash === undefined) this.update({ image: clip(event.name), infoHash: event.infoHash })
        return
      case 'progress': {
        this.update(figures(event))
        // Every piece is in while extraction goes on: the node is extracting.
        if (this.state.phase === 'downloading' && event.progress >= 1) this.enterStep('extract', undefined, 'extracting')
        return
      }
      case 'warning':
        this.log(`warning: ${event.message}`)
        this.update({ warning: clip(event.message) })
        return
      case 'done':
        this.log(`done: ${event.leaveReason}`)
        this.update(figures(event))
        if (this.opts.install === true) this.enterStep('downloaded', `left the swarm: ${event.leaveReason}`, 'finalizing')
        else this.enterStep('done', `left the swarm: ${event.leaveReason}`)
        return
      case 'installed':
        this.update({ progress: 1, system: installerFacts(event) })
        this.enterStep('installed', `${event.image} in ${event.seconds.toFixed(1)} s, firmware ${event.firmware ?? '?'}, finish ${event.finish ?? '?'}${event.uptimeSeconds !== undefined ? `, ${event.uptimeSeconds.toFixed(1)} s after kernel start` : ''}`, 'done')
        return
      case 'error': {
        this.log(`error: ${event.code}: ${event.message}`)
        const step = event.step ?? this.state.step
        this.update({
          error: { code: event.code, message: clip(event.message, REPORT_LIMITS.errorChars), ...(step !== undefined ? { step } : {}) },
          log: tailBytes(event.log ?? this.journal, REPORT_LIMITS.logBytes)
        })
        this.enterStep('failed', clip(`${event.code}: ${event.message}`), 'failed')
      }
    }
  }

  /** Sends what is left (bounded): the server then shows the run's end. */
  async flush (): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    this.lastSent = 0 // figures too, whatever the interval
    this.kick()
    let bound: NodeJS.Timeout | undefined
    await Promise.race([this.sending, new Promise(resolve => { bound = setTimeout(resolve, FLUSH_TIMEOUT_MS) })])
    clearTimeout(bound)
  }

  private log (line: string): void {
    this.journal = tailBytes(`${this.journal}${new Date().toISOString().slice(11, 19)} ${line}\n`, REPORT_LIMITS.logBytes)
  }

  private update (fields: Partial<NodeReport>): void {
    this.state = { ...this.state, ...fields }
    this.dirty = true
    this.schedule()
  }

  /** A new step is sent at once, each one, so the server's timeline has them all. */
  private enterStep (step: string, detail: string | undefined, phase = fleetPhaseOf(step)): void {
    const next: NodeReport = { ...this.state, step, phase: phase ?? this.state.phase }
    if (detail !== undefined) next.detail = clip(detail)
    else delete next.detail
    this.state = next
    if (this.steps.length >= MAX_QUEUED_STEPS) this.steps.shift()
    this.steps.push(serialize(next))
    this.dirty = false
    this.kick()
  }

  private schedule (): void {
    if (this.timer !== undefined || this.sending !== undefined) return
    const wait = Math.max(0, this.lastSent + this.intervalMs - Date.now())
    this.timer = setTimeout(() => { this.timer = undefined; this.kick() }, wait)
    this.timer.unref()
  }

  private kick (): void {
    if (this.sending !== undefined) return
    clearTimeout(this.timer)
    this.timer = undefined
    this.sending = this.drain().finally(() => {
      this.sending = undefined
      if (this.dirty || this.steps.length > 0) this.schedule()
    })
  }

  private async drain (): Promise<void> {
    for (;;) {
      const step = this.steps.shift()
      let body = step
      if (body === undefined && this.dirty && Date.now() - this.lastSent >= this.intervalMs) {
        body = serialize(this.state)
        this.dirty = false
      }
      if (body === undefined) return
      this.lastSent = Date.now()
      const refused = await this.post(body)
      if (refused) {
        // Told to slow down: a step waits at the head of the queue, figures are resent anyway.
        if (step !== undefined) this.steps.unshift(step); else this.dirty = true
        return
      }
    }
  }

  /** True when the server asked to be left alone for a while (429): the report was not taken. */
  private async post (body: string): Promise<boolean> {
    try {
      const credential = await this.opts.credential
      const reply = await httpRequest(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(credential !== undefined ? { [REPORT_AUTH_HEADER]: reportAuth(credential, this.opts.node, body) } : {}) },
        body,
        timeoutMs: REPORT_TIMEOUT_MS,
        maxBytes: MAX_REPORT_ANSWER_BYTES
      })
      const retryAfter = Number(reply.headers['retry-after'])
      const asked = reply.status === 429 && retryAfter > 0 ? retryAfter : parseReportAnswer(reply.body.toString('utf8'))?.intervalSeconds
      if (asked !== undefined) this.intervalMs = 1000 * Math.min(INTERVAL_BOUNDS_SECONDS.max, Math.max(INTERVAL_BOUNDS_SECONDS.min, asked))
      return reply.status === 429
    } catch { return false /* best effort: the next report says it all again */ }
  }
}

/** The report as posted, its log shortened if escaping made it longer than the server takes. */
export function serialize (report: NodeReport): string {
  let body = JSON.stringify(report)
  let log = report.log
  while (Buffer.byteLength(body) > REPORT_LIMITS.bodyBytes && log !== undefined && log !== '') {
    log = tailBytes(log, Math.floor(Buffer.byteLength(log) / 2))
    body = JSON.stringify({ ...report, log })
  }
  return body
}

function figures (f: ProgressFigures): Partial<NodeReport> {
  return {
    progress: Math.min(1, Math.max(0, f.progress)),
    downloadRate: f.downloadRate,
    uploadRate: f.uploadRate,
    bytesFromServer: f.downloadedFromServer,
    bytesFromPeers: Math.max(0, f.downloaded - f.downloadedFromServer),
    uploaded: f.uploaded,
    peers: f.peers
  }
}

/** What the installed report says of the installer's system, typed, for the fleet view and the e2e checks. */
function installerFacts (event: { firmware?: string; finish?: string; uptimeSeconds?: number }): SystemFacts {
  const firmware = (FIRMWARES as readonly string[]).includes(event.firmware ?? '') ? event.firmware as Firmware : undefined
  const facts: SystemFacts = {}
  if (firmware !== undefined) facts.firmware = firmware
  if (event.finish !== undefined) facts.finish = event.finish
  if (event.uptimeSeconds !== undefined) facts.uptimeSeconds = event.uptimeSeconds
  return facts
}
