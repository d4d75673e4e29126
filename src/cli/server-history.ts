// `si-server history`: every deployment the server recorded, newest first.
import { join } from 'node:path'
import { HISTORY_FILE, HISTORY_OPTIONS } from '../server/console-config.ts'
import { DeploymentHistory } from '../server/history.ts'
import { historyTable } from '../server/fleet-table.ts'
import { noExtraPositionals, readCommandLine } from '../config/command-line.ts'
import { commandHelp } from '../config/help.ts'

export const HISTORY_HELP = commandHelp(['si-server history [--repo DIR] [--json] [--image NAME] [--since WHEN] [--limit N]'], HISTORY_OPTIONS, { env: true })

export async function runHistoryCommand (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, HISTORY_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(HISTORY_HELP); return 0 }
  noExtraPositionals(positional, 0, HISTORY_HELP)
  const history = DeploymentHistory.openForReading(join(o.repo, HISTORY_FILE))
  try {
    const rows = history.list({ image: o.image, since: o.since, limit: o.limit })
    process.stdout.write(o.json ? rows.map(r => JSON.stringify(r) + '\n').join('') : historyTable(rows))
  } finally { history.close() }
  return 0
}
