import { TRACKER_ERROR_CODE_KEY } from '../errors.ts'
import { encodeBencode, type BencodeInput } from '../torrent/bencode.ts'
import type { PeerEntry, SwarmStats } from './peer-table.ts'
import { encodeCompactPeers } from '../torrent/compact-peers.ts'

export interface FailureOptions {
  /** our error code (SiErrorCode), for agents to act on */
  code?: string
  /** BEP 31 "retry in": never, for a refusal that will not change (the torrent is gone) */
  final?: boolean
}

export function failureReply (reason: string, opts: FailureOptions = {}): Uint8Array {
  const reply: Record<string, BencodeInput> = { 'failure reason': reason }
  if (opts.code !== undefined) reply[TRACKER_ERROR_CODE_KEY] = opts.code
  if (opts.final === true) reply['retry in'] = 'never'
  return encodeBencode(reply)
}

export interface AnnounceReplyFields {
  intervalSeconds: number
  minIntervalSeconds: number
  stats: SwarmStats
  peers: PeerEntry[]
  compact: boolean
  noPeerId: boolean
}

export function announceReply (fields: AnnounceReplyFields): Uint8Array {
  const reply: Record<string, BencodeInput> = {
    interval: fields.intervalSeconds,
    'min interval': fields.minIntervalSeconds,
    complete: fields.stats.complete,
    incomplete: fields.stats.incomplete
  }
  if (fields.compact) {
    reply.peers = encodeCompactPeers(fields.peers, 4)
    // BEP 7: IPv6 peers cannot go into the 6-byte form, so they travel beside it.
    const v6 = encodeCompactPeers(fields.peers, 6)
    if (v6.length > 0) reply.peers6 = v6
  } else {
    reply.peers = fields.peers.map((p) => fields.noPeerId
      ? { ip: p.host, port: p.port }
      : { ip: p.host, port: p.port, 'peer id': p.peerId })
  }
  return encodeBencode(reply)
}

/** BEP 48 keys `files` by the raw 20-byte hash; the encoder sorts such keys by their bytes. */
export function scrapeReply (entries: Array<{ infoHash: Uint8Array; stats: SwarmStats }>): Uint8Array {
  return encodeBencode({ files: new Map(entries.map(({ infoHash, stats }) => [infoHash, { ...stats }])) })
}
