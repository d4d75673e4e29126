// Multicast transport: udpcast's udp-receiver (what Flamethrower used) writes the image
// tarball to its stdout, which goes through the same piece verifier and extractor as the
// other transports. The sender side (udp-sender on the image server) is started by
// whoever runs the deployment, for now the benchmark harness.
import { spawn } from 'node:child_process'
import { SiError } from '../errors.ts'
import { deployFromStream, type StreamDeployOptions } from './stream-transport.ts'
import type { DeployResult } from './events.ts'

export const UDP_RECEIVER = 'udp-receiver'
/** How long udp-receiver waits for the sender to start, and for data once started. */
export const RECEIVER_START_TIMEOUT_S = 120
export const RECEIVER_DATA_TIMEOUT_S = 60
/** How much of udp-receiver's stderr is kept to explain a failure. */
const STDERR_TAIL_BYTES = 2048
/** After a kill, how long we wait before the harder one. */
const KILL_GRACE_MS = 2_000

export interface MulticastOptions extends Omit<StreamDeployOptions, 'transport'> {
  /** network interface the multicast arrives on (default: udp-receiver's choice) */
  interface?: string
  portbase: number
}

export async function deployMulticast (opts: MulticastOptions): Promise<DeployResult> {
  const args = [
    '--nokbd',
    '--portbase', String(opts.portbase),
    '--start-timeout', String(RECEIVER_START_TIMEOUT_S),
    '--receive-timeout', String(RECEIVER_DATA_TIMEOUT_S)
  ]
  if (opts.interface !== undefined) args.push('--interface', opts.interface)
  return await deployFromStream({ ...opts, transport: 'multicast' }, async () => {
    const child = spawn(UDP_RECEIVER, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => { stderr = (stderr + c.toString('utf8')).slice(-STDERR_TAIL_BYTES) })
    const finished = new Promise<void>((resolve, reject) => {
      child.once('error', err => {
        const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${UDP_RECEIVER} is not installed (Debian package udpcast)` : err.message
        reject(new SiError('ERR_HELPER_FAILED', `cannot run ${UDP_RECEIVER}: ${why}`, { cause: err }))
      })
      child.once('exit', (code, sig) => {
        if (code === 0) resolve()
        else reject(new SiError('ERR_HELPER_FAILED', `${UDP_RECEIVER} exited with ${code ?? sig}: ${lastLine(stderr)}`))
      })
    })
    const close = (): void => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      setTimeout(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }, KILL_GRACE_MS).unref()
    }
    return { stream: child.stdout, label: `${UDP_RECEIVER} ${args.join(' ')}`, finished, close }
  })
}

function lastLine (text: string): string {
  const lines = text.split(/[\r\n]+/).map(l => l.trim()).filter(l => l !== '')
  return lines.slice(-2).join(' / ') || 'no message'
}
