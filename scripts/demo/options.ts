// The demo's knobs. The defaults make the swarm's effect plain on one small machine:
// with the server capped at 8 MB/s, 8 copies of a 48 MB image would take it 48 s alone.
import { parseArgs } from 'node:util'
import { SiError } from '../../src/errors.ts'
import { parseRate } from '../../src/cli/args.ts'

export const DEFAULT_SIZE_MB = 48
export const DEFAULT_NODES = 8
export const DEFAULT_UPLOAD_LIMIT = '8MB'
/** Nodes leave once the tracker sees no leecher; this only bounds a swarm gone wrong. */
export const DEFAULT_SEED_MAX_SECONDS = 30
/** The whole deployment must end by then, or the demo fails it. */
export const DEFAULT_TIMEOUT_SECONDS = 180
const LIMITS = { sizeMb: [1, 4096], nodes: [1, 64], seedMax: [0, 3600], timeout: [10, 3600] } as const

export const USAGE = `usage: node --import tsx scripts/demo.ts [options]   (or: make demo)

Installs a generated sample image on several emulated nodes at once, on this machine,
through si-server and si-agent (dist/, from make build), and shows the swarm at work.

  --size-mb N          size of the sample image's files, in MB (default ${DEFAULT_SIZE_MB})
  --nodes N            number of nodes, each one si-agent process (default ${DEFAULT_NODES})
  --upload-limit RATE  cap on the server's upload, e.g. 8MB or 64mbit (default ${DEFAULT_UPLOAD_LIMIT})
  --seed-max S         longest a finished node keeps seeding (default ${DEFAULT_SEED_MAX_SECONDS})
  --timeout S          fail the deployment if it is not over by then (default ${DEFAULT_TIMEOUT_SECONDS})
  --summary-json FILE  also write the summary as JSON to FILE
  --keep               keep the work directory (image, repository, targets) for inspection
  -h, --help           this text
`

export interface DemoOptions {
  sizeBytes: number
  nodes: number
  uploadLimit: string
  uploadLimitBytesPerSecond: number
  seedMaxSeconds: number
  timeoutSeconds: number
  summaryJson?: string
  keep: boolean
  help: boolean
}

export function parseDemoOptions (argv: string[]): DemoOptions {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        'size-mb': { type: 'string' },
        nodes: { type: 'string' },
        'upload-limit': { type: 'string' },
        'seed-max': { type: 'string' },
        timeout: { type: 'string' },
        'summary-json': { type: 'string' },
        keep: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      }
    }))
  } catch (err) {
    throw new SiError('ERR_INVALID_ARGUMENT', (err as Error).message, { cause: err })
  }
  const uploadLimit = values['upload-limit'] ?? DEFAULT_UPLOAD_LIMIT
  return {
    sizeBytes: Math.round(number(values['size-mb'], 'size-mb', DEFAULT_SIZE_MB, LIMITS.sizeMb, false) * 1e6),
    nodes: number(values.nodes, 'nodes', DEFAULT_NODES, LIMITS.nodes, true),
    uploadLimit,
    uploadLimitBytesPerSecond: parseRate(uploadLimit, '--upload-limit'),
    seedMaxSeconds: number(values['seed-max'], 'seed-max', DEFAULT_SEED_MAX_SECONDS, LIMITS.seedMax, false),
    timeoutSeconds: number(values.timeout, 'timeout', DEFAULT_TIMEOUT_SECONDS, LIMITS.timeout, false),
    summaryJson: values['summary-json'],
    keep: values.keep === true,
    help: values.help === true
  }
}

function number (text: string | undefined, name: string, fallback: number, [min, max]: readonly [number, number], integer: boolean): number {
  if (text === undefined) return fallback
  const n = Number(text)
  if (text.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new SiError('ERR_INVALID_ARGUMENT', `--${name} ${JSON.stringify(text)}: expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`)
  }
  return n
}
