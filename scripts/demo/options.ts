// The demo's knobs. The defaults make the swarm's effect plain on one small machine:
// with the server capped at 8 MB/s, 8 copies of a 48 MB image would take it 48 s alone.
import { option, switchOption } from '../../src/config/options.ts'
import { decimal, integer, nonEmpty, rate } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'

const DEFAULT_UPLOAD_LIMIT = '8MB'

export const DEMO_OPTIONS = {
  sizeMb: option({ flag: 'size-mb', arg: 'N', help: 'size of the sample image\'s files, in MB', default: 48, parse: decimal(1, 4096) }),
  nodes: option({ flag: 'nodes', arg: 'N', help: 'number of nodes, each one si-agent process', default: 8, parse: integer(1, 64) }),
  uploadLimit: option({ flag: 'upload-limit', arg: 'RATE', help: 'cap on the server\'s upload, e.g. 8MB or 64mbit', default: rate(DEFAULT_UPLOAD_LIMIT), defaultText: DEFAULT_UPLOAD_LIMIT, parse: rate }),
  // Nodes leave once the tracker sees no leecher; this only bounds a swarm gone wrong.
  seedMaxSeconds: option({ flag: 'seed-max', arg: 'S', help: 'longest a finished node keeps seeding', default: 30, parse: decimal(0, 3600) }),
  timeoutSeconds: option({ flag: 'timeout', arg: 'S', help: 'fail the deployment if it is not over by then', default: 180, parse: decimal(10, 3600) }),
  summaryJson: option({ flag: 'summary-json', arg: 'FILE', help: 'also write the summary as JSON to FILE', parse: nonEmpty('a file') }),
  keep: switchOption({ flag: 'keep', help: 'keep the work directory (image, repository, targets) for inspection' })
}

export const USAGE = commandHelp(['node --import tsx scripts/demo.ts [options]   (or: make demo)'], DEMO_OPTIONS, {
  intro: `Installs a generated sample image on several emulated nodes at once, on this machine,
through si-server and si-agent (dist/, from make build), and shows the swarm at work.`
})

export interface DemoOptions {
  sizeBytes: number
  nodes: number
  uploadLimitBytesPerSecond: number
  seedMaxSeconds: number
  timeoutSeconds: number
  summaryJson?: string
  keep: boolean
  help: boolean
}

export function parseDemoOptions (argv: string[]): DemoOptions {
  const { values: o, positional, help } = readCommandLine(argv, DEMO_OPTIONS)
  noExtraPositionals(positional, 0, USAGE)
  return {
    sizeBytes: Math.round(o.sizeMb * 1e6),
    nodes: o.nodes,
    uploadLimitBytesPerSecond: o.uploadLimit,
    seedMaxSeconds: o.seedMaxSeconds,
    timeoutSeconds: o.timeoutSeconds,
    summaryJson: o.summaryJson,
    keep: o.keep,
    help
  }
}
