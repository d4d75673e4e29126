// BitTorrent v1 single-file metainfo (BEP 3, announce-list BEP 12, url-list BEP 19):
// one torrent per image tarball. Parsing is strict because a torrent decides what gets
// written to a node's disk; creation never adds trackers of its own.
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { PieceHasher, SHA1_LENGTH, hashFile } from './piece-hasher.ts'
import { decodeBencodeWithEntries, encodeBencode, encodeRawDict, isBencodeDict, type BencodeDict, type BencodeInput, type BencodeValue, type RawDictEntry } from './bencode.ts'

export const KIB = 1024
export const MIB = 1024 * KIB
export const GIB = 1024 * MIB

export const MIN_PIECE_LENGTH = 16 * KIB
export const MAX_PIECE_LENGTH = 64 * MIB
/** Images up to this size get SMALL_IMAGE_PIECE_LENGTH pieces. */
export const SMALL_IMAGE_MAX_BYTES = 1 * GIB
export const SMALL_IMAGE_PIECE_LENGTH = 1 * MIB
/** Images up to this size (and above SMALL_IMAGE_MAX_BYTES) get MEDIUM_IMAGE_PIECE_LENGTH pieces. */
export const MEDIUM_IMAGE_MAX_BYTES = 8 * GIB
export const MEDIUM_IMAGE_PIECE_LENGTH = 2 * MIB
export const LARGE_IMAGE_PIECE_LENGTH = 4 * MIB

export { SHA1_LENGTH }
/** Lengths must stay exact as JavaScript numbers. */
export const MAX_TORRENT_LENGTH = Number.MAX_SAFE_INTEGER
const MAX_NAME_BYTES = 255
export const DEFAULT_CREATED_BY = 'swarmimager'

export interface Metainfo {
  infoHash: Buffer
  infoHashHex: string
  name: string
  length: number
  pieceLength: number
  pieceCount: number
  pieceHashes: Buffer[]
  /** announce followed by the flattened announce-list, without duplicates. */
  announce: string[]
  urlList: string[]
  createdBy?: string
  comment?: string
  /** What the payload takes once extracted, when the torrent says (see UNPACKED_KEY). */
  unpacked?: UnpackedSize
  raw: Buffer
}

/** Disk space and inodes an image takes once extracted: checked before downloading. */
export interface UnpackedSize { bytes: number; entries: number }

/**
 * A top-level key, outside `info`: the info hash does not change, standard clients
 * ignore it, and the server's rewriting of trackers keeps it.
 */
export const UNPACKED_KEY = 'swarmimager unpacked'

export interface CreateTorrentOptions extends TorrentFields {
  file: string
  pieceLength?: number
  onProgress?: (hashedBytes: number, total: number) => void
  signal?: AbortSignal
}

function invalid (message: string, cause?: unknown): never {
  throw new SiError('ERR_INVALID_TORRENT', message, cause === undefined ? undefined : { cause })
}

/** Strict UTF-8: a name that does not round-trip would be a different file on disk. */
function utf8 (bytes: Uint8Array): string | undefined {
  const s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')
  return Buffer.byteLength(s) === bytes.byteLength && !s.includes('\uFFFD') ? s : undefined
}

/** Why `name` is not usable as one file name, or undefined when it is. */
export function unsafeNameReason (name: string): string | undefined {
  if (name.length === 0) return 'is empty'
  if (name === '.' || name === '..') return `is "${name}"`
  if (name.includes('/') || name.includes('\\')) return 'contains a path separator'
  if (name.includes('\0')) return 'contains a NUL byte'
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `is longer than ${MAX_NAME_BYTES} bytes`
  return undefined
}

export function isPowerOfTwo (n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 30
}

function validPieceLength (n: unknown): n is number {
  return typeof n === 'number' && isPowerOfTwo(n) && n >= MIN_PIECE_LENGTH && n <= MAX_PIECE_LENGTH
}

function optionalText (dict: BencodeDict, key: string): string | undefined {
  const v = dict[key]
  if (v === undefined) return undefined
  if (!(v instanceof Uint8Array)) invalid(`"${key}" is not a string`)
  const s = utf8(v)
  if (s === undefined) invalid(`"${key}" is not valid UTF-8`)
  return s
}

function urlListOf (v: BencodeValue | undefined, field: string): string[] {
  if (v === undefined) return []
  const items = Array.isArray(v) ? v : [v]
  return items.map((item, i) => {
    const s = item instanceof Uint8Array ? utf8(item) : undefined
    if (s === undefined) invalid(`"${field}" entry ${i} is not a UTF-8 string`)
    return s
  })
}

function unpackedOf (top: BencodeDict): UnpackedSize | undefined {
  const v = top[UNPACKED_KEY]
  if (v === undefined) return undefined
  if (!isBencodeDict(v)) invalid(`"${UNPACKED_KEY}" is not a dictionary`)
  const { bytes, entries } = v
  const count = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
  if (!count(bytes) || !count(entries)) invalid(`"${UNPACKED_KEY}" needs non-negative integers "bytes" and "entries"`)
  return { bytes, entries }
}

function announceOf (top: BencodeDict): string[] {
  const urls = urlListOf(top.announce, 'announce')
  const list = top['announce-list']
  if (list !== undefined) {
    if (!Array.isArray(list)) invalid('"announce-list" is not a list')
    list.forEach((tier, t) => {
      if (!Array.isArray(tier)) invalid(`"announce-list" tier ${t} is not a list`)
      urls.push(...urlListOf(tier, `announce-list tier ${t}`))
    })
  }
  return [...new Set(urls.filter(u => u.length > 0))]
}

/** The torrent's top-level dictionary, with the byte span of each value. */
function decodeTorrent (buf: Uint8Array): { top: BencodeDict; entries: RawDictEntry[] } {
  let decoded
  try {
    decoded = decodeBencodeWithEntries(buf)
  } catch (err) {
    invalid(`torrent is not valid bencode: ${(err as Error).message}`, err)
  }
  if (!isBencodeDict(decoded.value)) invalid('torrent is not a dictionary')
  return { top: decoded.value, entries: decoded.entries }
}

export function parseTorrent (buf: Uint8Array): Metainfo {
  const { top, entries } = decodeTorrent(buf)
  const info = top.info
  if (info === undefined) invalid('"info" is missing')
  if (!isBencodeDict(info)) invalid('"info" is not a dictionary')
  if (info.files !== undefined) invalid('"info.files": multi-file torrents are not supported')

  const rawName = info.name
  if (!(rawName instanceof Uint8Array)) invalid('"info.name" is missing or not a string')
  const name = utf8(rawName)
  if (name === undefined) invalid('"info.name" is not valid UTF-8')
  const nameProblem = unsafeNameReason(name)
  if (nameProblem !== undefined) invalid(`"info.name" ${nameProblem}`)

  const length = info.length
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length <= 0 || length > MAX_TORRENT_LENGTH) {
    invalid('"info.length" is not a positive integer within 2^53')
  }
  const pieceLength = info['piece length']
  if (!validPieceLength(pieceLength)) {
    invalid(`"info.piece length" is not a power of two between ${MIN_PIECE_LENGTH} and ${MAX_PIECE_LENGTH}`)
  }
  const pieces = info.pieces
  if (!(pieces instanceof Uint8Array)) invalid('"info.pieces" is missing or not a string')
  const pieceCount = Math.ceil(length / pieceLength)
  if (pieces.length !== SHA1_LENGTH * pieceCount) {
    invalid(`"info.pieces" is ${pieces.length} bytes, expected ${SHA1_LENGTH * pieceCount} for ${pieceCount} pieces`)
  }
  const pieceHashes: Buffer[] = []
  for (let i = 0; i < pieceCount; i++) {
    pieceHashes.push(Buffer.from(pieces.subarray(i * SHA1_LENGTH, (i + 1) * SHA1_LENGTH)))
  }

  // The info hash covers the info dictionary exactly as it was sent: re-encoding could
  // reorder or drop keys we do not know and silently change the torrent's identity.
  const infoEntry = entries.find(e => e.key.toString('latin1') === 'info')
  if (infoEntry === undefined) invalid('"info" is missing')
  const infoHash = createHash('sha1').update(buf.subarray(infoEntry.valueStart, infoEntry.valueEnd)).digest()
  const unpacked = unpackedOf(top)

  return {
    infoHash,
    infoHashHex: infoHash.toString('hex'),
    name,
    length,
    pieceLength,
    pieceCount,
    pieceHashes,
    announce: announceOf(top),
    urlList: urlListOf(top['url-list'], 'url-list').filter(u => u.length > 0),
    createdBy: optionalText(top, 'created by'),
    comment: optionalText(top, 'comment'),
    ...(unpacked !== undefined ? { unpacked } : {}),
    raw: Buffer.from(buf)
  }
}

/** The piece length for an image of `size` bytes on a LAN: few pieces, but enough to share early. */
export function pieceLengthFor (size: number): number {
  if (size <= SMALL_IMAGE_MAX_BYTES) return SMALL_IMAGE_PIECE_LENGTH
  if (size <= MEDIUM_IMAGE_MAX_BYTES) return MEDIUM_IMAGE_PIECE_LENGTH
  return LARGE_IMAGE_PIECE_LENGTH
}

export function pieceSize (meta: Metainfo, index: number): number {
  if (!Number.isInteger(index) || index < 0 || index >= meta.pieceCount) {
    throw new SiError('ERR_INVALID_ARGUMENT', `piece index ${index} out of range 0..${meta.pieceCount - 1}`)
  }
  return index === meta.pieceCount - 1 ? meta.length - index * meta.pieceLength : meta.pieceLength
}

function uniqueUrls (urls: string[] | undefined): string[] {
  return [...new Set((urls ?? []).filter(u => u.length > 0))]
}

/** announce, announce-list and url-list values for the given URLs; one tier per tracker, in order. */
function trackerFields (announce: string[] | undefined, urlList: string[] | undefined): Record<string, BencodeInput> {
  const trackers = uniqueUrls(announce)
  const seeds = uniqueUrls(urlList)
  const fields: Record<string, BencodeInput> = {}
  if (trackers.length > 0) fields.announce = trackers[0]
  if (trackers.length > 1) fields['announce-list'] = trackers.map(t => [t])
  if (seeds.length > 0) fields['url-list'] = seeds
  return fields
}

function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new SiError('ERR_ABORTED', 'torrent creation aborted')
}

/** What a torrent says besides its pieces' hashes. */
export interface TorrentFields {
  name: string
  announce?: string[]
  urlList?: string[]
  comment?: string
  createdBy?: string
  unpacked?: UnpackedSize
}

function checkName (name: string): void {
  const nameProblem = unsafeNameReason(name)
  if (nameProblem !== undefined) throw new SiError('ERR_INVALID_ARGUMENT', `torrent name "${name}" ${nameProblem}`)
}

export function checkPieceLength (pieceLength: number): void {
  if (!validPieceLength(pieceLength)) {
    throw new SiError('ERR_INVALID_ARGUMENT', `piece length ${pieceLength} is not a power of two between ${MIN_PIECE_LENGTH} and ${MAX_PIECE_LENGTH}`)
  }
}

/**
 * The bencoded torrent of a payload of `length` bytes whose pieces of `pieceLength` hash
 * to `pieces` (their SHA-1 digests, one after the other).
 */
export function encodeTorrent (fields: TorrentFields, length: number, pieceLength: number, pieces: Buffer): Buffer {
  checkName(fields.name)
  checkPieceLength(pieceLength)
  if (!Number.isSafeInteger(length) || length <= 0) throw new SiError('ERR_INVALID_ARGUMENT', `payload length ${length}: a torrent needs at least one byte`)
  if (pieces.length !== Math.ceil(length / pieceLength) * SHA1_LENGTH) {
    throw new SiError('ERR_INVALID_ARGUMENT', `${pieces.length / SHA1_LENGTH} piece hashes for ${length} bytes in pieces of ${pieceLength}`)
  }
  // Not private: BEP 27 would forbid PEX, which keeps a deployment going without the
  // tracker (so would LSD and DHT, not built yet).
  const info = { length, name: fields.name, 'piece length': pieceLength, pieces }
  const torrent: Record<string, BencodeInput> = {
    ...trackerFields(fields.announce, fields.urlList),
    'created by': fields.createdBy ?? DEFAULT_CREATED_BY,
    info
  }
  if (fields.comment !== undefined) torrent.comment = fields.comment
  if (fields.unpacked !== undefined) torrent[UNPACKED_KEY] = { bytes: fields.unpacked.bytes, entries: fields.unpacked.entries }
  return encodeBencode(torrent)
}

/** Streams `file` once, hashing each piece; returns the bencoded torrent. */
export async function createTorrent (opts: CreateTorrentOptions): Promise<Buffer> {
  checkName(opts.name)
  throwIfAborted(opts.signal)

  let fh
  try {
    fh = await open(opts.file, 'r')
  } catch (err) {
    throw new SiError('ERR_SOURCE_NOT_FOUND', `cannot open ${opts.file}: ${(err as Error).message}`, { cause: err })
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new SiError('ERR_INVALID_ARGUMENT', `${opts.file} is not a regular file`)
    const total = st.size
    if (total <= 0) throw new SiError('ERR_INVALID_ARGUMENT', `${opts.file} is empty; a torrent needs at least one byte`)
    const pieceLength = opts.pieceLength ?? pieceLengthFor(total)
    checkPieceLength(pieceLength)

    const hasher = new PieceHasher(pieceLength)
    await hashFile(fh, total, hasher, opts.file, { signal: opts.signal, onPiece: bytes => opts.onProgress?.(bytes, total) })
    const { bytesRead: extra } = await fh.read(Buffer.alloc(1), 0, 1, total)
    if (extra !== 0) throw new SiError('ERR_SOURCE_CHANGED', `${opts.file} grew while being hashed`)
    return encodeTorrent(opts, total, pieceLength, hasher.pieces())
  } finally {
    await fh.close()
  }
}

const REPLACED_KEYS = ['announce', 'announce-list', 'url-list']

/**
 * The same torrent (same info bytes, same info hash) with its trackers and web seeds
 * replaced, and `extra` top-level keys set (standard clients ignore keys they do not know).
 */
export function withTrackers (raw: Uint8Array, opts: { announce?: string[]; urlList?: string[]; extra?: Record<string, BencodeInput> }): Buffer {
  const meta = parseTorrent(raw)
  const fields = { ...trackerFields(opts.announce, opts.urlList), ...opts.extra }
  if ('info' in fields) throw new SiError('ERR_INVALID_ARGUMENT', 'withTrackers cannot replace "info"')
  const replaced = new Set([...REPLACED_KEYS, ...Object.keys(fields)])
  const entries = decodeTorrent(raw).entries
    .filter(e => !replaced.has(e.key.toString('latin1')))
    .map(e => ({ key: e.key, value: raw.subarray(e.valueStart, e.valueEnd) }))
  for (const [key, value] of Object.entries(fields)) {
    entries.push({ key: Buffer.from(key), value: encodeBencode(value) })
  }
  const out = encodeRawDict(entries)
  // Cheap insurance: the whole point of this function is an unchanged identity.
  if (!parseTorrent(out).infoHash.equals(meta.infoHash)) throw new SiError('ERR_INVALID_TORRENT', 'info hash changed while replacing trackers')
  return out
}
