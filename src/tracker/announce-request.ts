import { SiError } from '../errors.ts'
import { asciiValue, singleValue, type RawQuery } from './query.ts'

export const HASH_LENGTH = 20
export const PEER_ID_LENGTH = 20
const MAX_PORT = 65535
const DECIMAL = /^[0-9]{1,16}$/

/**
 * 'paused' is BEP 21's "upload only, not downloading" update that libtorrent sends; it
 * is an ordinary update here. 'empty' is the spelling some clients use for no event.
 */
export type AnnounceEvent = 'started' | 'completed' | 'stopped' | 'paused' | undefined
const EVENTS: ReadonlyMap<string, AnnounceEvent> = new Map<string, AnnounceEvent>([
  ['', undefined],
  ['empty', undefined],
  ['started', 'started'],
  ['completed', 'completed'],
  ['stopped', 'stopped'],
  ['paused', 'paused']
])

export interface AnnounceRequest {
  infoHash: Uint8Array
  infoHashHex: string
  peerId: Uint8Array
  peerIdHex: string
  port: number
  uploaded: number
  downloaded: number
  left: number
  event: AnnounceEvent
  numwant: number
  compact: boolean
  noPeerId: boolean
}

export interface NumwantLimits { defaultNumwant: number; maxNumwant: number }

/** Validates a BEP 3 announce; the error message names the offending field. */
export function parseAnnounceRequest (params: RawQuery, limits: NumwantLimits): AnnounceRequest {
  const infoHash = fixedBytes(params, 'info_hash', HASH_LENGTH)
  const peerId = fixedBytes(params, 'peer_id', PEER_ID_LENGTH)
  const port = requiredInteger(params, 'port')
  if (port < 1 || port > MAX_PORT) {
    throw new SiError('ERR_TRACKER_REQUEST', `port out of range (${port}, expected 1..${MAX_PORT})`)
  }
  const eventText = asciiValue(params, 'event') ?? ''
  if (!EVENTS.has(eventText)) {
    throw new SiError('ERR_TRACKER_REQUEST', `event not one of started, completed, stopped, empty (got ${JSON.stringify(eventText.slice(0, 32))})`)
  }
  return {
    infoHash,
    infoHashHex: Buffer.from(infoHash).toString('hex'),
    peerId,
    peerIdHex: Buffer.from(peerId).toString('hex'),
    port,
    uploaded: requiredInteger(params, 'uploaded'),
    downloaded: requiredInteger(params, 'downloaded'),
    left: requiredInteger(params, 'left'),
    event: EVENTS.get(eventText),
    numwant: numwant(params, limits),
    // BEP 23 lets a tracker answer compact regardless; only an explicit 0 asks for the list.
    compact: asciiValue(params, 'compact') !== '0',
    noPeerId: asciiValue(params, 'no_peer_id') === '1'
  }
}

export function fixedBytes (params: RawQuery, key: string, length: number): Uint8Array {
  const value = singleValue(params, key)
  if (value === undefined) throw new SiError('ERR_TRACKER_REQUEST', `missing ${key}`)
  if (value.length !== length) {
    throw new SiError('ERR_TRACKER_REQUEST', `${key} must be ${length} bytes (got ${value.length})`)
  }
  return value
}

function requiredInteger (params: RawQuery, key: string): number {
  const text = asciiValue(params, key)
  if (text === undefined) throw new SiError('ERR_TRACKER_REQUEST', `missing ${key}`)
  const value = DECIMAL.test(text) ? Number(text) : NaN
  if (!Number.isSafeInteger(value)) {
    throw new SiError('ERR_TRACKER_REQUEST', `${key} must be a non-negative integer (got ${JSON.stringify(text.slice(0, 32))})`)
  }
  return value
}

/** numwant is advisory and clients spell it loosely (some send -1): fall back, never fail. */
function numwant (params: RawQuery, limits: NumwantLimits): number {
  const text = asciiValue(params, 'numwant')
  if (text === undefined || !DECIMAL.test(text)) return limits.defaultNumwant
  return Math.min(Number(text), limits.maxNumwant)
}
