// si-agent: runs on a node being installed; pulls its image from the swarm into a target.
import { SiError, describeError } from '../errors.ts'
import { VERSION } from '../version.ts'
import { runDeployCommand } from './agent-deploy.ts'
import { runInstallCommand } from './agent-install.ts'
import { runVerifyCommand } from './agent-verify.ts'

export const AGENT_HELP = `usage: si-agent <command> [options]

commands:
  deploy     download an image from the swarm and extract it into a target directory
  install    install this node from its plan (partition, format, deploy, boot loader); run by the initramfs
  verify     compare a deployed target with its image, attribute by attribute

si-agent <command> --help shows the command's options; si-agent --version the version.
`

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  deploy: runDeployCommand,
  install: runInstallCommand,
  verify: runVerifyCommand
}

async function main (argv: string[]): Promise<number> {
  const command = argv[0]
  if (command === '--version') { process.stdout.write(`si-agent ${VERSION}\n`); return 0 }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(AGENT_HELP)
    return command === undefined ? 2 : 0
  }
  const run = COMMANDS[command]
  if (run === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `unknown command ${JSON.stringify(command)}; try si-agent --help`)
  return await run(argv.slice(1))
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`si-agent: error: ${describeError(err)}\n`)
  process.exitCode = 2
})
