// What the image server vouches for when it serves a torrent: this image version has
// this info hash. The statement and its signature travel inside the torrent, as two
// top-level keys beside "info", so the torrent stays one file a node can be given, and
// the server can still write announce and url-list for each client (they are outside
// the statement: they say where to look, the info hash says what is right). The info
// hash pins the info dictionary and so every piece's SHA-1: a statement that names it
// vouches for every byte the node will extract.
import { SiError } from '../errors.ts'

export const TORRENT_STATEMENT_KEY = 'swarmimager statement'
export const TORRENT_SIGNATURE_KEY = 'swarmimager signature'
/** Statements are a few hundred bytes; anything much larger is not one of ours. */
const MAX_STATEMENT_BYTES = 4096
const INFO_HASH = /^[0-9a-f]{40}$/

/**
 * What kind of payload a statement vouches for, as the repository's collections are
 * named: an image, or an override laid over one. It is signed, so an override cannot be
 * passed off as an image, nor an image as an override.
 */
export const COLLECTIONS = ['images', 'overrides'] as const
export type Collection = typeof COLLECTIONS[number]

export function isCollection (text: string): text is Collection {
  return (COLLECTIONS as readonly string[]).includes(text)
}

/** "image" or "override": how messages name a member of the collection. */
export function collectionNoun (c: Collection): string {
  return c === 'overrides' ? 'override' : 'image'
}

export interface ImageStatement {
  /** the repository's collection: images, or overrides */
  collection: Collection
  name: string
  version: number
  infoHash: string
  length: number
  pieceLength: number
  compression: string
  /** the payload's file name on the server */
  payload: string
  /** what the node asked for (NAME or NAME@N), when it asked the server */
  requested?: string
  /** the node's nonce for that request: a recorded answer cannot be replayed to it */
  nonce?: string
}

/** JSON with the fields in a fixed order. */
export function encodeStatement (s: ImageStatement): Buffer {
  const { collection, name, version, infoHash, length, pieceLength, compression, payload, requested, nonce } = s
  return Buffer.from(JSON.stringify({ collection, name, version, infoHash, length, pieceLength, compression, payload, requested, nonce }))
}

function malformed (why: string): never {
  throw new SiError('ERR_UNTRUSTED', `the torrent's signed statement is malformed: ${why}`)
}

/** Read only after its signature was checked; still strict, as any input is. */
export function parseStatement (bytes: Uint8Array): ImageStatement {
  if (bytes.length > MAX_STATEMENT_BYTES) malformed(`larger than ${MAX_STATEMENT_BYTES} bytes`)
  let v: unknown
  try { v = JSON.parse(Buffer.from(bytes).toString('utf8')) } catch { malformed('not JSON') }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) malformed('not an object')
  const o = v as Record<string, unknown>
  const text = (k: string): string => typeof o[k] === 'string' && o[k] !== '' ? o[k] : malformed(`${k} is not a string`)
  const count = (k: string): number => typeof o[k] === 'number' && Number.isSafeInteger(o[k]) && o[k] > 0 ? o[k] : malformed(`${k} is not a positive integer`)
  const optional = (k: string): string | undefined => o[k] === undefined ? undefined : text(k)
  const collection = text('collection')
  if (!isCollection(collection)) malformed(`collection is not one of ${COLLECTIONS.join(', ')}`)
  const infoHash = text('infoHash')
  if (!INFO_HASH.test(infoHash)) malformed('infoHash is not 40 hexadecimal digits')
  return {
    collection,
    name: text('name'),
    version: count('version'),
    infoHash,
    length: count('length'),
    pieceLength: count('pieceLength'),
    compression: text('compression'),
    payload: text('payload'),
    requested: optional('requested'),
    nonce: optional('nonce')
  }
}
