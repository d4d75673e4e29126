// One si-agent per emulated node, each reading its own --json event stream into the
// node's latest state, which the live view draws and the summary totals.
import { createWriteStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import type { ChildProcesses, Child } from './processes.ts'

/** Poll the tracker often while seeding, so nodes leave soon after the last one finishes. */
export const SEED_POLL_SECONDS = 1
/** A demo node that verifies nothing for this long is stuck: fail it instead of waiting. */
export const STALL_SECONDS = 60

export interface NodeState {
  node: string
  target: string
  phase: string
  progress: number
  downloadRate: number
  uploadRate: number
  peers: number
  downloaded: number
  downloadedFromServer: number
  uploaded: number
  /** from the agent's done event */
  seconds?: number
  downloadSeconds?: number
  leaveReason?: string
  error?: { code: string; message: string }
  warnings: number
  lastWarning?: string
  /** exit code once the process has ended */
  exitCode?: number
  startedAt: number
  exitedAt?: number
}

export interface AgentRun {
  state: NodeState
  child: Child
  /** the exit code; the state is final once it resolves */
  finished: Promise<number>
}

export interface AgentOptions {
  exe: string
  serverUrl: string
  imageRef: string
  /** the repository's public key: the agent installs nothing else */
  trustedKey: string
  node: string
  workDir: string
  seedMaxSeconds: number
  onPhase?: (state: NodeState) => void
}

export function nodeName (i: number): string {
  return `node${String(i + 1).padStart(2, '0')}`
}

export function startAgent (children: ChildProcesses, opts: AgentOptions): AgentRun {
  const target = join(opts.workDir, 'targets', opts.node)
  const child = children.spawn(opts.node, opts.exe, [
    'deploy', '--server', opts.serverUrl, '--image', opts.imageRef,
    '--target', target,
    // Staged inside the demo's work directory rather than in RAM by the usual rule:
    // whatever happens to an agent, removing that one directory leaves nothing behind.
    '--staging', join(opts.workDir, 'staging', opts.node),
    '--node', opts.node, '--json', '--trusted-key', opts.trustedKey,
    '--seed-wait', 'swarm', '--seed-max', String(opts.seedMaxSeconds), '--poll', String(SEED_POLL_SECONDS),
    '--stall-seconds', String(STALL_SECONDS)
  ])
  const state: NodeState = {
    node: opts.node, target, phase: 'starting', progress: 0, downloadRate: 0, uploadRate: 0, peers: 0,
    downloaded: 0, downloadedFromServer: 0, uploaded: 0, warnings: 0, startedAt: Date.now()
  }
  // Each node's event stream is kept in the work directory: --keep leaves it for a look.
  const log = createWriteStream(join(opts.workDir, 'logs', `${opts.node}.jsonl`))
  log.on('error', () => { /* the log is a convenience; the demo does not depend on it */ })
  const lines = createInterface({ input: child.process.stdout! })
  lines.on('line', line => {
    log.write(line + '\n')
    applyEvent(state, line, opts.onPhase)
  })
  const closed = new Promise<void>(resolve => lines.once('close', () => log.end(resolve)))
  const finished = child.exited.then(async code => {
    await closed // every event the agent wrote is in the state before anyone reads it
    state.exitCode = code
    state.exitedAt = Date.now()
    if (code !== 0 && state.phase !== 'failed') {
      state.phase = 'failed'
      state.error ??= { code: `EXIT_${code}`, message: child.stderrTail().join(' | ') || `si-agent exited with ${code}` }
      opts.onPhase?.(state)
    }
    return code
  })
  return { state, child, finished }
}

function applyEvent (state: NodeState, line: string, onPhase?: (state: NodeState) => void): void {
  let e: Record<string, unknown>
  try { e = JSON.parse(line) as Record<string, unknown> } catch { return } // no figures in a line that is not an event; the exit code still judges the node
  const num = (key: string, fallback: number): number => typeof e[key] === 'number' ? e[key] as number : fallback
  const before = state.phase
  if (typeof e.phase === 'string') state.phase = e.phase
  switch (e.type) {
    case 'progress':
    case 'done':
      state.progress = num('progress', state.progress)
      state.downloadRate = num('downloadRate', state.downloadRate)
      state.uploadRate = num('uploadRate', state.uploadRate)
      state.peers = num('peers', state.peers)
      state.downloaded = num('downloaded', state.downloaded)
      state.downloadedFromServer = num('downloadedFromServer', state.downloadedFromServer)
      state.uploaded = num('uploaded', state.uploaded)
      if (e.type === 'done') {
        state.seconds = num('seconds', NaN)
        state.downloadSeconds = num('downloadSeconds', NaN)
        state.leaveReason = typeof e.leaveReason === 'string' ? e.leaveReason : undefined
        state.downloadRate = 0
        state.uploadRate = 0
      }
      break
    case 'warning':
      state.warnings++
      state.lastWarning = String(e.message)
      break
    case 'error':
      state.error = { code: String(e.code), message: String(e.message) }
      break
  }
  if (state.phase !== before || e.type === 'error') onPhase?.(state)
}
