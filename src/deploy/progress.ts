// Renders agent events for a person (a bar on stderr) or a program (JSON lines on stdout).
import type { DeployEvent, EventSink } from './events.ts'

const BAR_WIDTH = 30
/** Without a terminal, one progress line this often instead of a redrawn bar. */
const PLAIN_LINE_INTERVAL_MS = 5_000

export function jsonSink (out: NodeJS.WritableStream = process.stdout, node?: string): EventSink {
  return event => { out.write(JSON.stringify({ time: new Date().toISOString(), node, ...event }) + '\n') }
}

export function terminalSink (err: NodeJS.WriteStream = process.stderr): EventSink {
  const tty = err.isTTY === true
  let lastPlain = 0
  let barShown = false
  const clearBar = (): void => { if (barShown) { err.write('\r\x1b[K'); barShown = false } }
  return event => {
    switch (event.type) {
      case 'phase':
        // Fetching the torrent takes a moment; saying so would only add a line before an error.
        if (event.phase === 'torrent') break
        clearBar()
        err.write(`si-agent: ${event.phase}${event.detail !== undefined ? `: ${event.detail}` : ''}\n`)
        break
      case 'warning':
        clearBar()
        err.write(`si-agent: warning: ${event.message}\n`)
        break
      case 'error':
        clearBar()
        err.write(`si-agent: error: ${event.code}: ${event.message}\n`)
        break
      case 'done':
        clearBar()
        err.write(`si-agent: done in ${event.seconds.toFixed(1)} s: ${mb(event.length)} MB verified, ${mb(event.downloaded)} MB received (${mb(event.downloadedFromServer)} MB from the server), ${mb(event.uploaded)} MB sent to peers; left the swarm: ${event.leaveReason}\n`)
        break
      case 'progress': {
        const line = progressLine(event)
        if (tty) { err.write(`\r\x1b[K${line}`); barShown = true } else if (Date.now() - lastPlain >= PLAIN_LINE_INTERVAL_MS) {
          lastPlain = Date.now()
          err.write(line + '\n')
        }
        break
      }
    }
  }
}

export function progressLine (p: Extract<DeployEvent, { type: 'progress' }>): string {
  const filled = Math.round(p.progress * BAR_WIDTH)
  const bar = '#'.repeat(filled) + '.'.repeat(BAR_WIDTH - filled)
  return `[${bar}] ${(p.progress * 100).toFixed(1).padStart(5)}% ${mb(p.downloadRate)} MB/s down ${mb(p.uploadRate)} MB/s up ${p.peers} peers ${p.phase}`
}

function mb (bytes: number): string { return (bytes / 1e6).toFixed(1) }
