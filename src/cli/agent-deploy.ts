// `si-agent deploy`: one image into one directory, from a server or a torrent.
import { hostname } from 'node:os'
import { SiError, describeError } from '../errors.ts'
import { DEPLOY_OPTIONS } from '../deploy/config.ts'
import { deployImage } from '../deploy/deploy.ts'
import type { DeployEvent, EventSink } from '../deploy/events.ts'
import { jsonSink, terminalSink } from '../deploy/progress.ts'
import { ServerReporter } from '../deploy/reporter.ts'
import { loadTorrent } from '../deploy/torrent-source.ts'
import { credentialForReports } from '../deploy/credential-client.ts'
import { effectiveTrustedKey, readBakedKey, UNAUTHENTICATED_WARNING } from '../deploy/trust.ts'
import { commandHelp } from '../config/help.ts'
import { noExtraPositionals, readCommandLine, required } from '../config/command-line.ts'
import { onTermination } from './signals.ts'

export const DEPLOY_HELP = commandHelp([
  'si-agent deploy --server URL --image NAME[@VERSION] --target DIR [options]',
  'si-agent deploy --torrent FILE|URL --target DIR [options]'
], DEPLOY_OPTIONS, {
  env: true,
  outro: `A setting not given as a flag is read from the environment variable in brackets.
Exit status 0 only when the target holds the verified image.`
})

/** Where the torrent comes from: a server and an image, or a torrent file or URL. */
export function torrentSourceOf (o: { server?: string; image?: string; torrent?: string }, command: string): { server?: string; image?: string; torrent?: string } {
  if (o.torrent === undefined && (o.server === undefined || o.image === undefined)) {
    throw new SiError('ERR_INVALID_ARGUMENT', `give --server URL and --image NAME[@VERSION], or --torrent FILE|URL (see ${command} --help)`)
  }
  return { server: o.server, image: o.image, torrent: o.torrent }
}

/** The key the agent trusts: the initramfs's baked one, else the one given (deploy and verify). */
export async function agentTrustedKey (given: string | undefined, origin: string | undefined): Promise<string | undefined> {
  return effectiveTrustedKey(given, origin, await readBakedKey())
}

export async function runDeployCommand (argv: string[]): Promise<number> {
  const { values: o, origins, positional, help } = readCommandLine(argv, DEPLOY_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(DEPLOY_HELP); return 0 }
  noExtraPositionals(positional, 0, DEPLOY_HELP)
  const source = torrentSourceOf(o, 'si-agent deploy')
  const target = required(o.target, 'target', 'DIR')
  const node = o.node ?? hostname()
  const trustedKey = await agentTrustedKey(o.trustedKey, origins.trustedKey)

  const termination = onTermination()
  const sinks: EventSink[] = [o.json ? jsonSink(process.stdout, node) : terminalSink()]
  const emit = (event: DeployEvent): void => { for (const s of sinks) s(event) }
  const warn = (message: string): void => emit({ type: 'warning', message })
  const reporter = o.server !== undefined && o.report
    ? new ServerReporter({ server: o.server, node, credential: credentialForReports(o.server, { node, macs: [], token: o.token }, warn, { signal: termination.signal }) })
    : undefined
  if (reporter !== undefined) sinks.push(reporter.sink())

  try {
    if (trustedKey === undefined) warn(UNAUTHENTICATED_WARNING)
    emit({ type: 'phase', phase: 'torrent', detail: o.torrent ?? `${o.image ?? ''} from ${o.server ?? ''}` })
    const metainfo = await loadTorrent(source, { signal: termination.signal, trustedKey })
    await deployImage({ metainfo, target, settings: o, emit, signal: termination.signal })
    return 0
  } catch (err) {
    emit({ type: 'error', phase: 'failed', code: err instanceof SiError ? err.code : 'ERR_INTERNAL', message: err instanceof SiError ? err.message : describeError(err) })
    return 1
  } finally {
    termination.dispose()
    await reporter?.flush()
  }
}
