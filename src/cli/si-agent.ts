// si-agent: runs on a node being installed; pulls its image from the swarm into a target.
import { hostname } from 'node:os'
import { SiError, describeError } from '../errors.ts'
import { VERSION } from '../version.ts'
import { parseArgs, stringFlag, requireFlag, numberFlag, parseHostPort, rateFlag, noExtraPositionals, type ParsedArgs } from './args.ts'
import { loadTorrent } from '../deploy/torrent-source.ts'
import { deploy } from '../deploy/transport-swarm.ts'
import { parseSeedWait, DEFAULT_SEED_MAX_SECONDS, DEFAULT_POLL_SECONDS } from '../deploy/seed-policy.ts'
import { jsonSink, terminalSink } from '../deploy/progress.ts'
import { ServerReporter } from '../deploy/reporter.ts'
import type { DeployEvent, EventSink } from '../deploy/events.ts'
import { parseTransport, deployHttp, deployAuto } from '../deploy/transport-http.ts'
import { deployMulticast } from '../deploy/transport-multicast.ts'
import { runInstallCommand } from './agent-install.ts'
import { runVerifyCommand } from '../deploy/verify-target.ts'

const USAGE = `usage: si-agent <command> [options]

commands:
  deploy     download an image from the swarm and extract it into a target directory
  install    install this node from its plan (partition, format, deploy, boot loader); run by the initramfs
  verify     compare a deployed target with its image, attribute by attribute

si-agent <command> --help shows the command's options; si-agent --version the version.
`

const DEPLOY_USAGE = `usage: si-agent deploy --server URL --image NAME[@VERSION] --target DIR [options]
       si-agent deploy --torrent FILE|URL --target DIR [options]

  --server URL          image server (http://HOST:PORT)
  --image NAME[@N]      image to install; NAME alone means its latest version
  --torrent FILE|URL    use this torrent instead of asking a server (any BitTorrent tracker)
  --target DIR          where the image is extracted (created if missing)
  --staging DIR         where the tarball is staged (default: RAM when free RAM exceeds
                        the image + 100 MB, else DIR/.si-staging under the target)
  --seed-wait POLICY    when to leave the swarm once done: none, upload-min=KIB_PER_S
                        (leave when upload falls under it) or swarm (leave when the
                        tracker reports no leecher left); default upload-min=50
  --seed-max SECONDS    longest time to keep seeding (default ${DEFAULT_SEED_MAX_SECONDS})
  --poll SECONDS        how often the seed-wait policy looks (default ${DEFAULT_POLL_SECONDS})
  --peer-port PORT      TCP port for incoming peers (default: any free port)
  --peer-host ADDRESS   address to listen on for peers (default: all addresses)
  --peer HOST:PORT      a peer to connect to at once (repeatable)
  --max-peers N         connections to other nodes, dialled or accepted; more are
                        refused (default 80; the server's seeder is not counted)
  --stall-seconds N     fail when no data is verified for this long (default 300)
  --upload-limit RATE   cap upload to peers, e.g. 400mbit or 50MB (per second)
  --node NAME           name reported to the server (default: the host name)
  --no-report           do not report progress to the server
  --json                machine-readable events on stdout instead of the progress bar
  --transport T         bt (the swarm, default), http (stream the image from the
                        server's web seed URL; a connection that drops or goes quiet
                        for 15 s is resumed where it stopped), multicast (udpcast's
                        udp-receiver; the server runs udp-sender), auto (the swarm,
                        falling back to http when it verifies nothing for 30 s)
  --mcast-interface IF  network interface for --transport multicast
  --mcast-portbase P    udpcast port base for --transport multicast (default 9000)
`

async function main (argv: string[]): Promise<number> {
  if (argv[0] === '--version') { process.stdout.write(`si-agent ${VERSION}\n`); return 0 }
  const command = argv[0]
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE)
    return command === undefined ? 2 : 0
  }
  if (command === 'install') return runInstallCommand(argv.slice(1))
  if (command === 'verify') return runVerifyCommand(argv.slice(1))
  if (command !== 'deploy') throw new SiError('ERR_INVALID_ARGUMENT', `unknown command ${JSON.stringify(command)}; try si-agent --help`)
  const args = parseArgs(argv.slice(1), {
    strings: ['server', 'image', 'torrent', 'target', 'staging', 'seed-wait', 'seed-max', 'poll', 'peer-port', 'peer-host', 'max-peers', 'stall-seconds', 'node', 'upload-limit', 'transport', 'mcast-interface', 'mcast-portbase'],
    booleans: ['json'],
    onByDefault: ['report'],
    repeatable: ['peer']
  })
  if (args.flags.help === true) { process.stdout.write(DEPLOY_USAGE); return 0 }
  return runDeploy(args)
}

async function runDeploy (args: ParsedArgs): Promise<number> {
  noExtraPositionals(args, 0, 'si-agent deploy --help')
  const server = stringFlag(args, 'server')
  const image = stringFlag(args, 'image')
  const torrent = stringFlag(args, 'torrent')
  if (torrent === undefined && (server === undefined || image === undefined)) {
    throw new SiError('ERR_INVALID_ARGUMENT', 'give --server URL and --image NAME[@VERSION], or --torrent FILE|URL (see si-agent deploy --help)')
  }
  if (server !== undefined && !/^https?:\/\/[^/]+/.test(server)) throw new SiError('ERR_INVALID_ARGUMENT', `--server ${JSON.stringify(server)}: expected http://HOST:PORT`)
  const target = requireFlag(args, 'target', 'DIR')
  const seedWait = parseSeedWait(stringFlag(args, 'seed-wait') ?? 'upload-min=50')
  const peers = ((args.flags.peer as string[] | undefined) ?? []).map(p => parseHostPort(p, '--peer'))
  const node = stringFlag(args, 'node') ?? hostname()
  const json = args.flags.json === true
  const transport = parseTransport(stringFlag(args, 'transport'))

  const sinks: EventSink[] = [json ? jsonSink(process.stdout, node) : terminalSink()]
  const reporter = server !== undefined && args.flags.report === true ? new ServerReporter(server, node) : undefined
  if (reporter !== undefined) sinks.push(reporter.sink())
  const emit = (event: DeployEvent): void => { for (const s of sinks) s(event) }

  const abort = new AbortController()
  const onSignal = (): void => abort.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    emit({ type: 'phase', phase: 'torrent', detail: torrent ?? `${image ?? ''} from ${server ?? ''}` })
    const metainfo = await loadTorrent({ server, image, torrent }, abort.signal)
    const stallSeconds = numberFlag(args, 'stall-seconds', { min: 1, max: 86_400 })
    const viaHttp = (): Promise<unknown> => deployHttp({ metainfo, target, emit, signal: abort.signal, stallSeconds })
    if (transport === 'http') { await viaHttp(); return 0 }
    if (transport === 'multicast') {
      const portbase = numberFlag(args, 'mcast-portbase', { min: 1, max: 65534, integer: true })
      await deployMulticast({ metainfo, target, emit, signal: abort.signal, stallSeconds, interface: stringFlag(args, 'mcast-interface'), portbase })
      return 0
    }
    const viaSwarm = (stall?: number): Promise<unknown> => deploy({
      metainfo,
      target,
      staging: stringFlag(args, 'staging'),
      seedWait,
      seedMaxSeconds: numberFlag(args, 'seed-max', { min: 0, max: 86_400 }),
      pollSeconds: numberFlag(args, 'poll', { min: 0.1, max: 3600 }),
      peerPort: numberFlag(args, 'peer-port', { min: 0, max: 65535, integer: true }),
      peerHost: stringFlag(args, 'peer-host'),
      maxConnections: numberFlag(args, 'max-peers', { min: 1, max: 10_000, integer: true }),
      stallSeconds: stall ?? stallSeconds,
      uploadBytesPerSecond: rateFlag(args, 'upload-limit'),
      peers,
      emit,
      signal: abort.signal
    })
    if (transport === 'auto') await deployAuto(s => viaSwarm(Math.min(s, stallSeconds ?? s)), viaHttp, emit)
    else await viaSwarm()
    return 0
  } catch (err) {
    emit({ type: 'error', phase: 'failed', code: err instanceof SiError ? err.code : 'ERR_INTERNAL', message: err instanceof SiError ? err.message : describeError(err) })
    return 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await reporter?.flush()
  }
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`si-agent: error: ${describeError(err)}\n`)
  process.exitCode = 2
})
