// `si-agent verify`: checks a deployed target against its image from the node itself.
import { listOption, option, switchOption } from '../config/options.ts'
import { nonEmpty, oneOf } from '../config/values.ts'
import { ATTRIBUTES, formatDifference } from '../image/verify.ts'
import { verifyTarget } from '../deploy/verify-target.ts'
import { DEPLOY_OPTIONS } from '../deploy/config.ts'
import { agentTrustedKey, torrentSourceOf } from './agent-deploy.ts'
import { UNAUTHENTICATED_WARNING } from '../deploy/trust.ts'
import { noExtraPositionals, readCommandLine, required } from '../config/command-line.ts'
import { commandHelp } from '../config/help.ts'

export const VERIFY_OPTIONS = {
  server: DEPLOY_OPTIONS.server,
  image: DEPLOY_OPTIONS.image,
  torrent: DEPLOY_OPTIONS.torrent,
  trustedKey: DEPLOY_OPTIONS.trustedKey,
  target: option({ flag: 'target', arg: 'DIR', help: 'the deployed tree to check', parse: nonEmpty('a directory') }),
  ignore: listOption({ flag: 'ignore', arg: 'ATTR,...', help: `leave attributes out: ${ATTRIBUTES.join(', ')}`, parseItem: oneOf(ATTRIBUTES) }),
  json: switchOption({ flag: 'json', help: 'the differences as JSON' })
}

export const VERIFY_HELP = commandHelp([
  'si-agent verify --server URL --image NAME[@VERSION] --target DIR [options]',
  'si-agent verify --torrent FILE|URL --target DIR [options]'
], VERIFY_OPTIONS, {
  env: true,
  intro: `Compares a deployed target with its image (streamed from the server's web seed) and
lists every difference. Exit status 0: identical; 1: differences.`
})

export async function runVerifyCommand (argv: string[]): Promise<number> {
  const { values: o, origins, positional, help } = readCommandLine(argv, VERIFY_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(VERIFY_HELP); return 0 }
  noExtraPositionals(positional, 0, VERIFY_HELP)
  const source = torrentSourceOf(o, 'si-agent verify')
  const target = required(o.target, 'target', 'DIR')
  const trustedKey = await agentTrustedKey(o.trustedKey, origins.trustedKey)
  if (trustedKey === undefined) process.stderr.write(`si-agent: warning: ${UNAUTHENTICATED_WARNING}\n`)
  const { differences, entries } = await verifyTarget({ ...source, target, ignore: o.ignore, trustedKey })
  if (o.json) process.stdout.write(JSON.stringify(differences, null, 2) + '\n')
  else for (const d of differences) process.stdout.write(formatDifference(d) + '\n')
  process.stderr.write(`si-agent: ${target}: ${differences.length === 0 ? 'no difference' : `${differences.length} difference(s)`} in ${entries} entries\n`)
  return differences.length === 0 ? 0 : 1
}
