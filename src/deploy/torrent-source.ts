// Where the agent's torrent comes from: the image server (by image reference), or a
// torrent file or URL given directly (any standard tracker and seeders).
import { readFile } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { parseImageRef } from '../formats/image-ref.ts'
import { parseTorrent, type Metainfo } from '../torrent/metainfo.ts'
import { httpGetRetrying } from './http-get.ts'

export function torrentUrlFor (server: string, imageRef: string): string {
  const { name, version } = parseImageRef(imageRef)
  const base = server.replace(/\/+$/, '')
  const path = version === undefined ? `${encodeURIComponent(name)}` : `${encodeURIComponent(name)}/${version}`
  return `${base}/images/${path}/image.torrent`
}

export async function loadTorrent (source: { server?: string; image?: string; torrent?: string }, signal?: AbortSignal): Promise<Metainfo> {
  let raw: Buffer
  let from: string
  if (source.torrent !== undefined) {
    from = source.torrent
    if (/^https?:\/\//.test(source.torrent)) raw = await httpGetRetrying(source.torrent, { signal })
    else {
      try { raw = await readFile(source.torrent) } catch (err) {
        throw new SiError('ERR_INVALID_ARGUMENT', `cannot read torrent ${source.torrent}: ${(err as Error).message}`, { cause: err })
      }
    }
  } else if (source.server !== undefined && source.image !== undefined) {
    from = torrentUrlFor(source.server, source.image)
    raw = await httpGetRetrying(from, { signal, hint: 'check --server and that si-server runs and is reachable from this network' })
  } else {
    throw new SiError('ERR_INVALID_ARGUMENT', 'give --server and --image, or --torrent')
  }
  try {
    return parseTorrent(raw)
  } catch (err) {
    if (err instanceof SiError) throw new SiError(err.code, `torrent from ${from}: ${err.message}`, { cause: err })
    throw err
  }
}
