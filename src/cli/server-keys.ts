// si-server's trust commands. `key show`: the repository's public key, the one line agents
// are told to trust (si.trusted_key=, --trusted-key, make initrd TRUSTED_KEY=). `token
// show`: what a node proves itself with (si.token=): the deployment's token, a group's,
// or one node's credential. Each key or secret is made on first use.
import { SiError } from '../errors.ts'
import { option, OptionValueError } from '../config/options.ts'
import { isNodeName, NODE_NAME_RULE } from '../formats/node-name.ts'
import { repositorySigner } from '../image/keys.ts'
import { REPO_OPTIONS } from '../server/config.ts'
import { NodeCredentials } from '../server/node-credentials.ts'
import { GROUP_NAME_RULE, isGroupName } from '../server/plans.ts'
import { commandHelp } from '../config/help.ts'
import { noExtraPositionals, readCommandLine } from '../config/command-line.ts'

function checked (test: (text: string) => boolean, rule: string): (text: string) => string {
  return text => {
    if (!test(text)) throw new OptionValueError(rule)
    return text
  }
}

const TOKEN_OPTIONS = {
  ...REPO_OPTIONS,
  group: option({ flag: 'group', arg: 'GROUP', help: 'the token of this group of groups.conf', parse: checked(isGroupName, GROUP_NAME_RULE) }),
  node: option({ flag: 'node', arg: 'NAME', help: 'this node\'s own credential (it also signs the node\'s reports)', parse: checked(isNodeName, NODE_NAME_RULE) })
}

export const KEY_HELP = commandHelp(['si-server key show [--repo DIR]'], REPO_OPTIONS, {
  env: true,
  intro: `Prints the repository's public signing key, made on first use in REPO/keys (owner-only).
Agents given it (si.trusted_key=KEY on the kernel command line, --trusted-key KEY, or
make initrd TRUSTED_KEY=KEY) use nothing this key did not sign.`
})

export const TOKEN_HELP = commandHelp(['si-server token show [--group GROUP | --node NAME] [--repo DIR]'], TOKEN_OPTIONS, {
  env: true,
  intro: `Prints a token for si.token= on a node's kernel command line: the deployment's (every
node), a group's (the nodes groups.conf puts in it), or one node's credential. A node
proves it holds one without sending it; with serve --require-token, only such a node
gets its plan. Derived from REPO/keys/node.secret: deleting that file revokes them all.`
})

function subcommand (argv: string[], help: string): boolean {
  const sub = argv[0]
  if (sub === '--help' || sub === '-h') { process.stdout.write(help); return false }
  if (sub !== 'show') throw new SiError('ERR_INVALID_ARGUMENT', `${sub === undefined ? 'missing command' : `unknown command ${JSON.stringify(sub)}`}; ${help.split('\n')[0]}`)
  return true
}

export async function keyCommand (argv: string[]): Promise<number> {
  if (!subcommand(argv, KEY_HELP)) return 0
  const { values: o, positional, help } = readCommandLine(argv.slice(1), REPO_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(KEY_HELP); return 0 }
  noExtraPositionals(positional, 0, KEY_HELP)
  process.stdout.write(`${(await repositorySigner(o.repo)).publicKey}\n`)
  return 0
}

export async function tokenCommand (argv: string[]): Promise<number> {
  if (!subcommand(argv, TOKEN_HELP)) return 0
  const { values: o, positional, help } = readCommandLine(argv.slice(1), TOKEN_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(TOKEN_HELP); return 0 }
  noExtraPositionals(positional, 0, TOKEN_HELP)
  if (o.group !== undefined && o.node !== undefined) throw new SiError('ERR_INVALID_ARGUMENT', 'give --group or --node, not both')
  const credentials = await NodeCredentials.open(o.repo)
  const token = o.node !== undefined ? credentials.credential(o.node) : o.group !== undefined ? credentials.groupToken(o.group) : credentials.deploymentToken()
  process.stdout.write(`${token}\n`)
  return 0
}
