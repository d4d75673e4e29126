// `si-agent verify`: checks a deployed target against its image from the node itself,
// streaming the payload from the server's web seed (the torrent's url-list), so the
// end-to-end runs can ask an installed node whether it matches, attribute by attribute.
import { Readable } from 'node:stream'
import { SiError } from '../errors.ts'
import { diffSnapshots, snapshotArchive, snapshotTree, type Difference } from '../image/verify.ts'
import { loadTorrent } from './torrent-source.ts'

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
