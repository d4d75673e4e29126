// Sends the agent's events to the image server's fleet view. Best effort: a server that
// does not answer must never slow down or fail an install, so each report is bounded
// and the newest progress replaces any still unsent. Each report is signed with the
// node's credential (the server refuses others); events wait for the credential to come.
import type { DeployEvent, EventSink } from './events.ts'
import { httpRequest } from '../http-client.ts'
import { REPORT_AUTH_HEADER, reportAuth } from '../formats/node-auth.ts'

export const REPORT_TIMEOUT_MS = 3_000
/** The server answers a report with a short acknowledgement; anything longer is not read. */
const MAX_REPORT_ANSWER_BYTES = 64 * 1024

export class ServerReporter {
  private readonly url: string
  private sending: Promise<void> | undefined
  private queued: DeployEvent | undefined
  private readonly important: DeployEvent[] = []

  /** `credential`: the node's (credential-client.ts); undefined when it could not be had. */
  constructor (server: string, private readonly node: string, private readonly credential: Promise<string | undefined> = Promise.resolve(undefined)) {
    this.url = `${server.replace(/\/+$/, '')}/api/nodes/${encodeURIComponent(node)}/events`
  }

  sink (): EventSink {
    return event => {
      if (event.type === 'progress') this.queued = event
      else this.important.push(event)
      if (this.sending === undefined) this.sending = this.drain().finally(() => { this.sending = undefined })
    }
  }

  /** Waits (bounded) for the last events to go out, so the final state is on the server. */
  async flush (): Promise<void> {
    await this.sending
  }

  private async drain (): Promise<void> {
    for (;;) {
      const event = this.important.shift() ?? this.queued
      if (event === undefined) return
      if (event === this.queued) this.queued = undefined
      try {
        const credential = await this.credential
        const body = JSON.stringify(event)
        await httpRequest(this.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(credential !== undefined ? { [REPORT_AUTH_HEADER]: reportAuth(credential, this.node, body) } : {}) },
          body,
          timeoutMs: REPORT_TIMEOUT_MS,
          maxBytes: MAX_REPORT_ANSWER_BYTES
        })
      } catch { /* best effort */ }
    }
  }
}
