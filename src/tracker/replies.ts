import { encodeBencode, type BencodeInput } from '../torrent/bencode.ts'
import type { PeerEntry, SwarmStats } from './peer-table.ts'
import { encodeCompactPeers } from '../torrent/compact-peers.ts'

export function failureReply (reason: string): Uint8Array {
  return encodeBencode({ 'failure reason': reason })
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
