// si-server: the image server. Makes images and torrents, runs the tracker and the first
// seeder, serves torrents and payloads, and collects the fleet's progress.
import { SiError, describeError } from '../errors.ts'
import { VERSION } from '../version.ts'
import { parseArgs, stringFlag, requireFlag, numberFlag, parseHostPort, rateFlag, noExtraPositionals, type ParsedArgs } from './args.ts'
import { ImageRepository, type ImageVersion } from '../image/repository.ts'
import { ImageServer, DEFAULT_HTTP_PORT, DEFAULT_PEER_PORT } from '../server/image-server.ts'
import { compressionFlag, imageCapture, imageVerify, overrideCommand } from './server-image.ts'

const DEFAULT_REPO = process.env.SI_REPO ?? '/var/lib/swarmimager'

const USAGE = `usage: si-server <command> [options]

commands:
  serve                 run the HTTP API, tracker and first seeder
  image add NAME        pack a directory into a new version of image NAME
  image list            list images and versions
  image rm NAME[@N]     remove an image (all versions) or one version
  image verify NAME[@N] --against DIR   list every difference between an image and a tree
  image capture NAME --from HOST        copy a running machine (rsync) into a new version
  override add|list|rm  trees laid over images after extraction (per group, per host)

Every command takes --repo DIR (default ${DEFAULT_REPO}, or $SI_REPO) and --help.
`

const SERVE_USAGE = `usage: si-server serve [--repo DIR] [--listen HOST:PORT] [options]

  --repo DIR              image repository (default ${DEFAULT_REPO})
  --listen HOST:PORT      HTTP API, tracker and web seed (default 0.0.0.0:${DEFAULT_HTTP_PORT})
  --peer-listen HOST:PORT BitTorrent seeder (default 0.0.0.0:${DEFAULT_PEER_PORT})
  --public-url URL        base URL written into torrents (default: the Host each client used)
  --announce-interval S   tracker announce interval in seconds (default 15)
  --upload-limit RATE     cap the seeder's upload, e.g. 400mbit or 50MB (per second)
  --no-seed               track and serve over HTTP, but do not seed over BitTorrent
  --plans DIR             node plans: hosts/, macs/, groups.conf + groups/, default.json
                          (default REPO/plans; see docs/PXE.md)
  --boot-dir DIR          vmlinuz and initrd.img served at /boot/ for iPXE (default REPO/boot)
  --boot-args ARGS        extra kernel arguments in the generated /boot/boot.ipxe
`

const ADD_USAGE = `usage: si-server image add NAME --from DIR [--repo DIR] [--piece-length BYTES]

  --from DIR            the root file system to pack
  --piece-length BYTES  torrent piece size, a power of two (default: chosen by image size)
  --compression KIND    none, gzip or zstd (default none; zstd: 2.5x smaller, agents need
                        the zstd binary)
`
const LIST_USAGE = 'usage: si-server image list [--repo DIR] [--json]\n'
const RM_USAGE = 'usage: si-server image rm NAME[@VERSION] [--repo DIR]\n'

async function main (argv: string[]): Promise<number> {
  if (argv[0] === '--version') { process.stdout.write(`si-server ${VERSION}\n`); return 0 }
  const command = argv[0]
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE)
    return command === undefined ? 2 : 0
  }
  if (command === 'serve') return serve(argv.slice(1))
  if (command === 'override') return overrideCommand(argv.slice(1), DEFAULT_REPO)
  if (command === 'image') {
    const sub = argv[1]
    if (sub === 'add') return imageAdd(argv.slice(2))
    if (sub === 'list' || sub === 'ls') return imageList(argv.slice(2))
    if (sub === 'rm' || sub === 'remove') return imageRemove(argv.slice(2))
    if (sub === 'verify') return imageVerify(argv.slice(2), DEFAULT_REPO)
    if (sub === 'capture') return imageCapture(argv.slice(2), DEFAULT_REPO)
    if (sub === undefined || sub === '--help' || sub === '-h') { process.stdout.write(USAGE); return sub === undefined ? 2 : 0 }
    throw new SiError('ERR_INVALID_ARGUMENT', `unknown image command ${JSON.stringify(sub)}; try si-server --help`)
  }
  throw new SiError('ERR_INVALID_ARGUMENT', `unknown command ${JSON.stringify(command)}; try si-server --help`)
}

function helpOr (args: ParsedArgs, usage: string): boolean {
  if (args.flags.help !== true) return false
  process.stdout.write(usage)
  return true
}

async function serve (argv: string[]): Promise<number> {
  const args = parseArgs(argv, { strings: ['repo', 'listen', 'peer-listen', 'public-url', 'announce-interval', 'upload-limit', 'plans', 'boot-dir', 'boot-args'], onByDefault: ['seed'] })
  if (helpOr(args, SERVE_USAGE)) return 0
  noExtraPositionals(args, 0, SERVE_USAGE)
  const listen = parseHostPort(stringFlag(args, 'listen') ?? `0.0.0.0:${DEFAULT_HTTP_PORT}`, '--listen')
  const peerListen = parseHostPort(stringFlag(args, 'peer-listen') ?? `${listen.host}:${DEFAULT_PEER_PORT}`, '--peer-listen')
  const publicUrl = stringFlag(args, 'public-url')
  if (publicUrl !== undefined && !/^https?:\/\/[^/]+/.test(publicUrl)) throw new SiError('ERR_INVALID_ARGUMENT', `--public-url ${JSON.stringify(publicUrl)}: expected http://HOST:PORT`)
  const server = new ImageServer({
    repoDir: stringFlag(args, 'repo') ?? DEFAULT_REPO,
    host: listen.host,
    port: listen.port,
    peerPort: peerListen.port,
    publicUrl,
    announceIntervalSeconds: numberFlag(args, 'announce-interval', { min: 1, max: 3600, integer: true }),
    seed: args.flags.seed === true,
    uploadBytesPerSecond: rateFlag(args, 'upload-limit'),
    plansDir: stringFlag(args, 'plans'),
    bootDir: stringFlag(args, 'boot-dir'),
    bootKernelArgs: stringFlag(args, 'boot-args')
  })
  server.seeder.on('warning', err => process.stderr.write(`si-server: warning: ${describeError(err)}\n`))
  await server.start()
  const images = await server.repo.list()
  process.stderr.write(`si-server: serving ${images.length} image version(s) from ${server.repo.root} on http://${listen.host}:${server.httpPort}, seeding on port ${server.seeder.port}\n`)
  await new Promise<void>(resolve => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  process.stderr.write('si-server: stopping\n')
  await server.stop()
  return 0
}

async function imageAdd (argv: string[]): Promise<number> {
  const args = parseArgs(argv, { strings: ['repo', 'from', 'piece-length', 'compression'] })
  if (helpOr(args, ADD_USAGE)) return 0
  const name = args.positional[0]
  if (name === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `missing image NAME; ${ADD_USAGE.trim()}`)
  noExtraPositionals(args, 1, ADD_USAGE)
  const from = requireFlag(args, 'from', 'DIR')
  const pieceLength = numberFlag(args, 'piece-length', { min: 16384, max: 64 * 1024 * 1024, integer: true })
  const repo = new ImageRepository(stringFlag(args, 'repo') ?? DEFAULT_REPO)
  const started = Date.now()
  let lastShown = 0
  const version = await repo.add(name, {
    from,
    pieceLength,
    compression: compressionFlag(args),
    onProgress: (phase, done, total) => {
      if (Date.now() - lastShown < 1000) return
      lastShown = Date.now()
      process.stderr.write(`si-server: ${phase} ${(done / 1e6).toFixed(1)} MB${total !== undefined ? ` of ${(total / 1e6).toFixed(1)} MB` : ''}\n`)
    }
  })
  process.stderr.write(`si-server: added ${version.name}@${version.version}: ${version.entries} entries, ${version.size} bytes, piece ${version.pieceLength}, info hash ${version.infoHashHex} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`)
  process.stdout.write(`${version.name}@${version.version}\n`)
  return 0
}

async function imageList (argv: string[]): Promise<number> {
  const args = parseArgs(argv, { strings: ['repo'], booleans: ['json'] })
  if (helpOr(args, LIST_USAGE)) return 0
  noExtraPositionals(args, 0, LIST_USAGE)
  const versions = await new ImageRepository(stringFlag(args, 'repo') ?? DEFAULT_REPO).list()
  if (args.flags.json === true) { process.stdout.write(JSON.stringify(versions, null, 2) + '\n'); return 0 }
  process.stdout.write(formatTable(versions))
  return 0
}

async function imageRemove (argv: string[]): Promise<number> {
  const args = parseArgs(argv, { strings: ['repo'] })
  if (helpOr(args, RM_USAGE)) return 0
  const ref = args.positional[0]
  if (ref === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `missing NAME[@VERSION]; ${RM_USAGE.trim()}`)
  noExtraPositionals(args, 1, RM_USAGE)
  const removed = await new ImageRepository(stringFlag(args, 'repo') ?? DEFAULT_REPO).remove(ref)
  for (const v of removed) process.stdout.write(`removed ${v.name}@${v.version}\n`)
  return 0
}

function formatTable (versions: ImageVersion[]): string {
  if (versions.length === 0) return 'no images\n'
  const rows = [['IMAGE', 'VERSION', 'SIZE', 'PIECE', 'ENTRIES', 'CREATED', 'INFO HASH'], ...versions.map(v => [
    v.name, String(v.version), `${(v.size / 1e6).toFixed(1)} MB`, `${v.pieceLength / 1024} KiB`, String(v.entries), v.createdAt, v.infoHashHex
  ])]
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n'
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`si-server: error: ${describeError(err)}\n`)
  process.exitCode = err instanceof SiError && err.code === 'ERR_INVALID_ARGUMENT' ? 2 : 1
})
