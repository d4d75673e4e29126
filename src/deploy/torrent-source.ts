// Where the agent's torrent comes from: the image server (by image or override
// reference, from /images/ or /overrides/), or a torrent file or URL given directly (any standard tracker and seeders). With a trusted
// key, the torrent must carry the server's signed statement, checked here, before any
// caller sees the torrent (trust.ts).
import { readFile } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { parseImageRef } from '../formats/image-ref.ts'
import type { Collection } from '../formats/image-statement.ts'
import { newNonce } from '../formats/node-auth.ts'
import { parseTorrent, type Metainfo } from '../torrent/metainfo.ts'
import { httpGetRetrying } from './http-get.ts'
import { checkTorrent, type ExpectedImage } from './trust.ts'

export interface TorrentSource {
  server?: string
  image?: string
  torrent?: string
  /** the server's collection `image` is in (default images); the signed statement must name it */
  collection?: Collection
}

export interface LoadOptions {
  signal?: AbortSignal
  /** accept only a torrent this key vouched for */
  trustedKey?: string
}

/** The server's URL for an image's (or override's) torrent; a nonce goes into the signed statement. */
export function torrentUrlFor (server: string, imageRef: string, nonce?: string, collection: Collection = 'images'): string {
  const { name, version } = parseImageRef(imageRef)
  const base = server.replace(/\/+$/, '')
  const path = version === undefined ? `${encodeURIComponent(name)}` : `${encodeURIComponent(name)}/${version}`
  return `${base}/${collection}/${path}/image.torrent${nonce !== undefined ? `?nonce=${nonce}` : ''}`
}

async function fetchRaw (source: TorrentSource, signal: AbortSignal | undefined): Promise<{ raw: Buffer; from: string; expected: ExpectedImage }> {
  if (source.torrent !== undefined) {
    const from = source.torrent
    if (/^https?:\/\//.test(from)) return { raw: (await httpGetRetrying(from, { signal })).body, from, expected: {} }
    try {
      return { raw: await readFile(from), from, expected: {} }
    } catch (err) {
      throw new SiError('ERR_INVALID_ARGUMENT', `cannot read torrent ${from}: ${(err as Error).message}`, { cause: err })
    }
  }
  if (source.server !== undefined && source.image !== undefined) {
    const nonce = newNonce()
    const collection = source.collection ?? 'images'
    const url = torrentUrlFor(source.server, source.image, nonce, collection)
    const doc = await httpGetRetrying(url, { signal, hint: 'check --server and that si-server runs and is reachable from this network' })
    return { raw: doc.body, from: torrentUrlFor(source.server, source.image, undefined, collection), expected: { requested: source.image, nonce, collection } }
  }
  throw new SiError('ERR_INVALID_ARGUMENT', 'give --server and --image, or --torrent')
}

export async function loadTorrent (source: TorrentSource, opts: LoadOptions = {}): Promise<Metainfo> {
  const { raw, from, expected } = await fetchRaw(source, opts.signal)
  let meta: Metainfo
  try {
    meta = parseTorrent(raw)
  } catch (err) {
    if (err instanceof SiError) throw new SiError(err.code, `torrent from ${from}: ${err.message}`, { cause: err })
    throw err
  }
  if (opts.trustedKey !== undefined) checkTorrent(meta, opts.trustedKey, expected, from)
  return meta
}
