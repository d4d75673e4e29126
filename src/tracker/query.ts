import { SiError } from '../errors.ts'

// A BEP 3 announce is a few hundred bytes; scrape with many hashes is the longest
// legitimate query (about 62 bytes per hash). Anything beyond is abuse or a bug.
export const MAX_QUERY_LENGTH = 4096
export const MAX_QUERY_PARAMS = 128

const PLUS = 0x2b
const SPACE = 0x20
const PERCENT = 0x25
const FIRST_PRINTABLE = 0x21
const LAST_PRINTABLE = 0x7e

/** Query parameters with their values kept as raw bytes, in order of appearance. */
export type RawQuery = Map<string, Uint8Array[]>

/**
 * Parses the raw query string of a request target. info_hash and peer_id are binary:
 * URLSearchParams would decode them as UTF-8 and replace invalid sequences, so the
 * percent-decoding here yields bytes.
 */
export function parseRawQuery (query: string): RawQuery {
  if (query.length > MAX_QUERY_LENGTH) {
    throw new SiError('ERR_TRACKER_REQUEST', `query too long (${query.length} bytes, limit ${MAX_QUERY_LENGTH})`)
  }
  const params: RawQuery = new Map()
  if (query === '') return params
  const pairs = query.split('&')
  if (pairs.length > MAX_QUERY_PARAMS) {
    throw new SiError('ERR_TRACKER_REQUEST', `too many query parameters (${pairs.length}, limit ${MAX_QUERY_PARAMS})`)
  }
  for (const pair of pairs) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    const rawKey = eq === -1 ? pair : pair.slice(0, eq)
    const rawValue = eq === -1 ? '' : pair.slice(eq + 1)
    const key = Buffer.from(percentDecode(rawKey, 'parameter name')).toString('latin1')
    const value = percentDecode(rawValue, key)
    const values = params.get(key)
    if (values === undefined) params.set(key, [value])
    else values.push(value)
  }
  return params
}

/**
 * '+' is taken as a space, as form encoders (quote_plus and the like) produce it; clients
 * that escape per RFC 3986 send a literal '+' as %2B, so both kinds decode correctly.
 */
export function percentDecode (text: string, what: string): Uint8Array {
  const out = new Uint8Array(text.length)
  let n = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === PERCENT) {
      const hex = text.slice(i + 1, i + 3)
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
        throw new SiError('ERR_TRACKER_REQUEST', `malformed percent-encoding in ${what}`)
      }
      out[n++] = parseInt(hex, 16)
      i += 2
    } else if (c === PLUS) {
      out[n++] = SPACE
    } else if (c >= FIRST_PRINTABLE && c <= LAST_PRINTABLE) {
      out[n++] = c
    } else {
      throw new SiError('ERR_TRACKER_REQUEST', `unescaped control or non-ASCII character in ${what}`)
    }
  }
  return out.subarray(0, n)
}

/** The single value of a parameter, undefined when absent; a repeated one is ambiguous. */
export function singleValue (params: RawQuery, key: string): Uint8Array | undefined {
  const values = params.get(key)
  if (values === undefined) return undefined
  if (values.length > 1) throw new SiError('ERR_TRACKER_REQUEST', `${key} given more than once`)
  return values[0]
}

export function asciiValue (params: RawQuery, key: string): string | undefined {
  const value = singleValue(params, key)
  return value === undefined ? undefined : Buffer.from(value).toString('latin1')
}
