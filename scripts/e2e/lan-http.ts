// HTTP requests to si-server from inside the emulated LAN's namespace (the host cannot
// reach its address): Node's fetch run there (busybox-static's wget crashes here).
import { describeError } from '../../src/errors.ts'
import { SERVER_IP, type Lan } from './lan.ts'
import { must, type Running } from './proc.ts'

export const SERVER_PORT = 8470
export const SERVER_URL = `http://${SERVER_IP}:${SERVER_PORT}`
const HTTP_TIMEOUT_MS = 15_000
const SERVER_READY_MS = 15_000
const SERVER_POLL_MS = 300

const FETCH_SCRIPT = `(async () => {
  const [url, out] = process.argv.slice(1)
  const res = await fetch(url, { signal: AbortSignal.timeout(${HTTP_TIMEOUT_MS}) })
  if (!res.ok) { console.error(url + ' answered ' + res.status); process.exit(1) }
  const body = Buffer.from(await res.arrayBuffer())
  if (out === '-') process.stdout.write(body); else require('node:fs').writeFileSync(out, body)
})().catch(e => { console.error(String(e.cause ?? e)); process.exit(1) })`

/** GET SERVER_URL + path; the body, or written to `out`. */
export async function wget (lan: Lan, path: string, out = '-'): Promise<string> {
  return must([...lan.exec, process.execPath, '-e', FETCH_SCRIPT, `${SERVER_URL}${path}`, out])
}

export async function waitForServer (lan: Lan, server: Running): Promise<void> {
  const deadline = Date.now() + SERVER_READY_MS
  for (;;) {
    try { await wget(lan, '/api/status'); return } catch (err) {
      if (server.child.exitCode !== null || Date.now() > deadline) throw new Error(`si-server did not come up: ${describeError(err)}`)
    }
    await new Promise(resolve => setTimeout(resolve, SERVER_POLL_MS))
  }
}
