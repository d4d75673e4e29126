// `si-server serve`: the HTTP API, the tracker and the first seeder, until stopped.
import { describeError } from '../errors.ts'
import { DEFAULT_PEER_PORT, SERVE_OPTIONS } from '../server/config.ts'
import { ImageServer } from '../server/image-server.ts'
import { noExtraPositionals, readCommandLine } from '../config/command-line.ts'
import { commandHelp } from '../config/help.ts'

export const SERVE_HELP = commandHelp(['si-server serve [--repo DIR] [--listen HOST:PORT] [options]'], SERVE_OPTIONS, { env: true })

export async function runServeCommand (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, SERVE_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(SERVE_HELP); return 0 }
  noExtraPositionals(positional, 0, SERVE_HELP)
  const peerListen = o.peerListen ?? { host: o.listen.host, port: DEFAULT_PEER_PORT }
  const server = new ImageServer({
    repoDir: o.repo,
    host: o.listen.host,
    port: o.listen.port,
    peerHost: peerListen.host,
    peerPort: peerListen.port,
    publicUrl: o.publicUrl,
    announceIntervalSeconds: o.announceInterval,
    seed: o.seed,
    uploadBytesPerSecond: o.uploadLimit,
    plansDir: o.plans,
    bootDir: o.bootDir,
    bootKernelArgs: o.bootArgs,
    requireToken: o.requireToken
  })
  server.on('warning', err => process.stderr.write(`si-server: warning: ${describeError(err)}\n`))
  await server.start()
  const images = await server.repo.list()
  process.stderr.write(`si-server: serving ${images.length} image version(s) from ${server.repo.root} on http://${o.listen.host}:${server.httpPort}, seeding on port ${server.seeder.port}; dashboard at http://${o.listen.host}:${server.httpPort}/\n`)
  process.stderr.write(`si-server: signing with si.trusted_key=${server.signer?.publicKey ?? ''}\n`)
  if (!o.requireToken) process.stderr.write('si-server: warning: plans and report credentials go to any node that asks (--require-token makes nodes prove themselves with si.token)\n')
  await new Promise<void>(resolve => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  process.stderr.write('si-server: stopping\n')
  await server.stop()
  return 0
}
