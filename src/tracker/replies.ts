import bencode from 'bencode'
import type { PeerEntry, SwarmStats } from './peer-table.ts'
import { encodeCompactPeers } from '../torrent/compact-peers.ts'

export function failureReply (reason: string): Uint8Array {
  return bencode.encode({ 'failure reason': reason })
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
  const reply: Record<string, unknown> = {
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
  return bencode.encode(reply)
}

/**
 * BEP 48 keys `files` by the raw 20-byte hash. The bencode package sorts Map keys as
 * strings, not bytes, so this dictionary is assembled here in byte order.
 */
export function scrapeReply (entries: Array<{ infoHash: Uint8Array; stats: SwarmStats }>): Uint8Array {
  const sorted = [...entries].sort((a, b) => Buffer.compare(a.infoHash, b.infoHash))
  const parts: Uint8Array[] = [Buffer.from('d5:filesd')]
  for (const { infoHash, stats } of sorted) {
    parts.push(Buffer.from(`${infoHash.length}:`), infoHash, bencode.encode({ ...stats }))
  }
  parts.push(Buffer.from('ee'))
  return Buffer.concat(parts)
}
