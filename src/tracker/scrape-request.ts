import { SiError } from '../errors.ts'
import { HASH_LENGTH } from './announce-request.ts'
import type { RawQuery } from './query.ts'

/** BEP 48: any number of info_hash parameters; none means every swarm the tracker knows. */
export function parseScrapeRequest (params: RawQuery): Uint8Array[] {
  const hashes = params.get('info_hash') ?? []
  for (const hash of hashes) {
    if (hash.length !== HASH_LENGTH) {
      throw new SiError('ERR_TRACKER_REQUEST', `info_hash must be ${HASH_LENGTH} bytes (got ${hash.length})`)
    }
  }
  return hashes
}
