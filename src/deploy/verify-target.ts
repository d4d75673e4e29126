// `si-agent verify`: checks a deployed target against its image from the node itself,
// streaming the payload from the server's web seed (the torrent's url-list), so the
// end-to-end runs can ask an installed node whether it matches, attribute by attribute.
// The stream goes through the torrent's piece hashes: the url-list is not signed, the
// info hash is, so the image compared against is the one the torrent names.
import { Readable, pipeline } from 'node:stream'
import { SiError } from '../errors.ts'
import { diffSnapshots, snapshotArchive, snapshotTree, type Difference } from '../image/verify.ts'
import { PieceVerifier } from './stream-transport.ts'
import { loadTorrent } from './torrent-source.ts'

export interface VerifyTargetOptions {
  server?: string
  image?: string
  torrent?: string
  target: string
  ignore?: string[]
  signal?: AbortSignal
  trustedKey?: string
}

export async function verifyTarget (opts: VerifyTargetOptions): Promise<{ differences: Difference[]; entries: number }> {
  const meta = await loadTorrent({ server: opts.server, image: opts.image, torrent: opts.torrent }, { signal: opts.signal, trustedKey: opts.trustedKey })
  const url = meta.urlList[0]
  if (url === undefined) throw new SiError('ERR_INVALID_TORRENT', 'the torrent names no web seed (url-list) to read the image from')
  let res: Response
  try {
    res = await fetch(url, { signal: opts.signal })
  } catch (err) {
    throw new SiError('ERR_SERVER_UNREACHABLE', `cannot reach ${url}: ${(err as Error).message}`, { cause: err })
  }
  if (!res.ok || res.body === null) throw new SiError('ERR_HTTP_STATUS', `${url} answered ${res.status}`)
  const verified = new PieceVerifier(meta)
  // A failure on either side reaches the snapshot through `verified`.
  pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), verified, () => {})
  const expected = await snapshotArchive(verified)
  const differences = diffSnapshots(expected, await snapshotTree(opts.target), { ignore: opts.ignore })
  return { differences, entries: expected.size }
}
