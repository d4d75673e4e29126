// si-server in the server's namespace for one trial: started fresh each time, so its
// tracker holds no peers and its byte counters start at zero.
import { SiError } from '../../src/errors.ts'
import { SERVER_ADDRESS } from './cluster.ts'
import { run, sleep, spawnTracked, stopChild, tail } from './exec.ts'

export const HTTP_PORT = 8470
export const PEER_PORT = 6881
const READY_TIMEOUT_MS = 20_000
const READY_POLL_MS = 250
const STATUS_TIMEOUT_MS = 5_000

export interface ServerStatus { seederUploadedBytes?: number; payloadBytesSent?: number; serverBytesSent?: number }

export interface RunningServer {
  url: string
  pid: number | undefined
  status(): Promise<ServerStatus>
  stop(): Promise<void>
  /** SIGKILL, as a crash or a power cut would end it */
  crash(): Promise<void>
}

export async function startImageServer (serverBin: string, ns: string, repo: string, extraArgs: string[] = [], host = SERVER_ADDRESS): Promise<RunningServer> {
  const serverUrl = `http://${host}:${HTTP_PORT}`
  const child = spawnTracked('ip', ['netns', 'exec', ns, serverBin, 'serve', '--repo', repo,
    '--listen', `${host}:${HTTP_PORT}`, '--peer-listen', `${host}:${PEER_PORT}`, ...extraArgs])
  const stderr = tail(child.stderr)
  child.stdout?.resume()
  const status = async (): Promise<ServerStatus> => {
    const out = await run('ip', ['netns', 'exec', ns, 'curl', '-sf', '--max-time', String(STATUS_TIMEOUT_MS / 1000), `${serverUrl}/api/status`], { timeoutMs: STATUS_TIMEOUT_MS * 2 })
    return JSON.parse(out) as ServerStatus
  }
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    try {
      await status()
      break
    } catch (err) {
      if (Date.now() > deadline || child.exitCode !== null) {
        await stopChild(child)
        throw new SiError('ERR_BENCH', `si-server did not come up in ${READY_TIMEOUT_MS / 1000} s: ${stderr().trim() || (err as Error).message}`)
      }
      await sleep(READY_POLL_MS)
    }
  }
  return { url: serverUrl, pid: child.pid, status, stop: async () => { await stopChild(child) }, crash: async () => { await stopChild(child, 0, 'SIGKILL') } }
}
