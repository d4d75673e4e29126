// Events of a full install: the download's own events (events.ts) plus the phases
// around it and the final verdict. They go to the same places: the console (or JSON
// lines) and the server's fleet view.
import type { DeployEvent, EventSink, ProgressFigures } from '../deploy/events.ts'
import { terminalSink, jsonSink } from '../deploy/progress.ts'
import { ServerReporter } from '../deploy/reporter.ts'
import { credentialForReports, type NodeIdentity } from '../deploy/credential-client.ts'
import type { RetryOptions } from '../deploy/http-get.ts'
import type { Firmware } from './bootloader.ts'

export type InstallPhase = 'config' | 'network' | 'plan' | 'tools' | 'disks' | 'partition' | 'format' | 'mount' | 'overrides' | 'fstab' | 'bootloader' | 'post-install' | 'unmount' | 'finish'

export type InstallEvent =
  | DeployEvent
  | { type: 'phase'; phase: InstallPhase; detail?: string; uptimeSeconds?: number }
  | ({
    type: 'installed'
    phase: 'installed'
    image: string
    plan: string
    seconds: number
    /** since the node's kernel started: boot-to-installed */
    uptimeSeconds?: number
    /** what the node booted the installer with, which decided the boot loader */
    firmware: Firmware
    finish: string
  } & Partial<ProgressFigures>)
  | { type: 'error'; phase: 'failed'; code: string; message: string; step: string; log?: string }

export type InstallSink = (event: InstallEvent) => void

/** A nested download's phase (the tool bundle's, an override's) as the detail of the install step it belongs to. */
export function nestedPhaseDetail (ref: string, event: { phase: string; detail?: string }): string {
  return `${ref}: ${event.phase}${event.detail !== undefined ? `: ${event.detail}` : ''}`
}

/**
 * The download's renderers go by `type`, never by `phase`: install events pass through
 * them unchanged. This is the one place where that is asserted to the type checker.
 */
function widen (sink: EventSink): InstallSink {
  return sink as unknown as InstallSink
}

export interface InstallOutput {
  emit: InstallSink
  /** waits (bounded) until the server has the last event */
  flush: () => Promise<void>
  /** the node's report credential (undefined: none, or no reports): the installed system reports with it too */
  credential: () => Promise<string | undefined>
}

export interface InstallOutputOptions {
  json: boolean
  node: string
  /** where reports go; absent: none are sent */
  monitor?: string
  /** what the node proves itself with when it asks for its report credential */
  macs?: string[]
  token?: NodeIdentity['token']
  /** how the credential is asked for (default: as any document, retried while the server is unreachable) */
  credentialRetry?: Pick<RetryOptions, 'attempts' | 'retryMs'>
  out?: NodeJS.WritableStream
  err?: NodeJS.WriteStream
}

export function installOutput (opts: InstallOutputOptions): InstallOutput {
  const console = opts.json ? widen(jsonSink(opts.out ?? process.stdout, opts.node)) : widen(terminalSink(opts.err))
  // Asked for at once, before the first report: even a failure to get the plan is reported as this node's.
  const credential = opts.monitor !== undefined
    ? credentialForReports(opts.monitor, { node: opts.node, macs: opts.macs ?? [], token: opts.token }, message => console({ type: 'warning', message }), opts.credentialRetry)
    : undefined
  const reporter = opts.monitor !== undefined ? new ServerReporter({ server: opts.monitor, node: opts.node, install: true, credential }) : undefined
  const report = reporter?.sink()
  const errStream = opts.err ?? process.stderr
  return {
    emit: event => {
      console(event)
      if (!opts.json && event.type === 'installed') {
        errStream.write(`si-agent: installed ${event.image} (plan ${event.plan}) in ${event.seconds.toFixed(1)} s${event.uptimeSeconds !== undefined ? `, ${event.uptimeSeconds.toFixed(1)} s after kernel start` : ''}; next: ${event.finish}\n`)
      }
      report?.(event)
    },
    flush: async () => { await reporter?.flush() },
    credential: async () => await credential
  }
}
