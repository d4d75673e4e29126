// si-server: the image server. Makes images and torrents, runs the tracker and the first
// seeder, serves torrents and payloads, and collects the fleet's progress.
import { SiError, describeError } from '../errors.ts'
import { VERSION } from '../version.ts'
import { DEFAULT_REPO } from '../server/config.ts'
import { imageAdd, imageCapture, imageList, imageRemove, imageVerify, overrideCommand } from './server-image.ts'
import { runServeCommand } from './server-serve.ts'
import { keyCommand, tokenCommand } from './server-keys.ts'
import { runMonitorCommand } from './server-monitor.ts'
import { runHistoryCommand } from './server-history.ts'

export const SERVER_HELP = `usage: si-server <command> [options]

commands:
  serve                 run the HTTP API, tracker, first seeder and the fleet dashboard (/)
  monitor               watch the fleet install, live, in a terminal (--server URL)
  history               list past deployments: per node start, end, outcome, bytes
  image add NAME        pack a directory into a new version of image NAME
  image list            list images and versions
  image rm NAME[@N]     remove an image (all versions) or one version
  image verify NAME[@N] --against DIR   list every difference between an image and a tree
  image capture NAME --from HOST        copy a running machine (rsync) into a new version
  override add|list|rm  trees laid over images after extraction (per group, per host)
  key show              the repository's public signing key, for si.trusted_key=
  token show            a token for si.token=: the deployment's, a group's (--group) or a node's (--node)

Every command but monitor takes --repo DIR (default ${DEFAULT_REPO}, or $SI_REPO) and --help.
`

const IMAGE_COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  add: imageAdd,
  list: imageList,
  ls: imageList,
  rm: imageRemove,
  remove: imageRemove,
  verify: imageVerify,
  capture: imageCapture
}

function isHelp (word: string | undefined): boolean {
  return word === undefined || word === '--help' || word === '-h' || word === 'help'
}

async function main (argv: string[]): Promise<number> {
  const command = argv[0]
  if (command === '--version') { process.stdout.write(`si-server ${VERSION}\n`); return 0 }
  if (isHelp(command)) { process.stdout.write(SERVER_HELP); return command === undefined ? 2 : 0 }
  if (command === 'serve') return await runServeCommand(argv.slice(1))
  if (command === 'monitor') return await runMonitorCommand(argv.slice(1))
  if (command === 'history') return await runHistoryCommand(argv.slice(1))
  if (command === 'override') return await overrideCommand(argv.slice(1))
  if (command === 'key') return await keyCommand(argv.slice(1))
  if (command === 'token') return await tokenCommand(argv.slice(1))
  if (command === 'image') {
    const sub = argv[1]
    if (isHelp(sub)) { process.stdout.write(SERVER_HELP); return sub === undefined ? 2 : 0 }
    const run = IMAGE_COMMANDS[sub as string]
    if (run === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `unknown image command ${JSON.stringify(sub)}; try si-server --help`)
    return await run(argv.slice(2))
  }
  throw new SiError('ERR_INVALID_ARGUMENT', `unknown command ${JSON.stringify(command)}; try si-server --help`)
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`si-server: error: ${describeError(err)}\n`)
  process.exitCode = err instanceof SiError && err.code === 'ERR_INVALID_ARGUMENT' ? 2 : 1
})
