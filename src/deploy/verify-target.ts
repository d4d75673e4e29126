// `si-agent verify`: checks a deployed target against its image from the node itself,
// streaming the payload from the server's web seed (the torrent's url-list), so the
// end-to-end runs can ask an installed node whether it matches, attribute by attribute.
import { Readable } from 'node:stream'
import { SiError } from '../errors.ts'
import { parseArgs, requireFlag, stringFlag, noExtraPositionals } from '../cli/args.ts'
import { ATTRIBUTES, diffSnapshots, formatDifference, snapshotArchive, snapshotTree, type Difference } from '../image/verify.ts'
import { loadTorrent } from './torrent-source.ts'

export const VERIFY_USAGE = `usage: si-agent verify --server URL --image NAME[@VERSION] --target DIR [options]
       si-agent verify --torrent FILE|URL --target DIR [options]

Compares a deployed target with its image (streamed from the server's web seed) and
lists every difference. Exit status 0: identical; 1: differences.

  --ignore ATTR,...     leave attributes out: ${ATTRIBUTES.join(', ')}
  --json                the differences as JSON
`

export interface VerifyTargetOptions {
  server?: string
  image?: string
  torrent?: string
  target: string
  ignore?: string[]
  signal?: AbortSignal
}

export async function verifyTarget (opts: VerifyTargetOptions): Promise<{ differences: Difference[]; entries: number }> {
  const meta = await loadTorrent({ server: opts.server, image: opts.image, torrent: opts.torrent }, opts.signal)
  const url = meta.urlList[0]
  if (url === undefined) throw new SiError('ERR_INVALID_TORRENT', 'the torrent names no web seed (url-list) to read the image from')
  let res: Response
  try {
    res = await fetch(url, { signal: opts.signal })
  } catch (err) {
    throw new SiError('ERR_SERVER_UNREACHABLE', `cannot reach ${url}: ${(err as Error).message}`, { cause: err })
  }
  if (!res.ok || res.body === null) throw new SiError('ERR_HTTP_STATUS', `${url} answered ${res.status}`)
  const expected = await snapshotArchive(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>))
  const differences = diffSnapshots(expected, await snapshotTree(opts.target), { ignore: opts.ignore })
  return { differences, entries: expected.size }
}

export async function runVerifyCommand (argv: string[]): Promise<number> {
  const args = parseArgs(argv, { strings: ['server', 'image', 'torrent', 'target', 'ignore'], booleans: ['json'] })
  if (args.flags.help === true) { process.stdout.write(VERIFY_USAGE); return 0 }
  noExtraPositionals(args, 0, VERIFY_USAGE)
  const torrent = stringFlag(args, 'torrent')
  const server = stringFlag(args, 'server')
  const image = stringFlag(args, 'image')
  if (torrent === undefined && (server === undefined || image === undefined)) {
    throw new SiError('ERR_INVALID_ARGUMENT', 'give --server URL and --image NAME[@VERSION], or --torrent FILE|URL (see si-agent verify --help)')
  }
  const target = requireFlag(args, 'target', 'DIR')
  const { differences, entries } = await verifyTarget({
    server, image, torrent, target, ignore: (stringFlag(args, 'ignore') ?? '').split(',').filter(s => s !== '')
  })
  if (args.flags.json === true) process.stdout.write(JSON.stringify(differences, null, 2) + '\n')
  else for (const d of differences) process.stdout.write(formatDifference(d) + '\n')
  process.stderr.write(`si-agent: ${target}: ${differences.length === 0 ? 'no difference' : `${differences.length} difference(s)`} in ${entries} entries\n`)
  return differences.length === 0 ? 0 : 1
}
