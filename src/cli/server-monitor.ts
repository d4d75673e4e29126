// `si-server monitor`: the fleet as a live table in a terminal, or as lines in a log.
import { MONITOR_OPTIONS } from '../server/console-config.ts'
import { runMonitor } from '../server/monitor.ts'
import { noExtraPositionals, readCommandLine } from '../config/command-line.ts'
import { commandHelp } from '../config/help.ts'

export const MONITOR_HELP = commandHelp(['si-server monitor [--server URL] [--interval SECONDS] [--once]'], MONITOR_OPTIONS, { env: true })

export async function runMonitorCommand (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, MONITOR_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(MONITOR_HELP); return 0 }
  noExtraPositionals(positional, 0, MONITOR_HELP)
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await runMonitor({ server: o.server, intervalSeconds: o.interval, once: o.once, out: process.stdout, signal: stop.signal })
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  return 0
}
