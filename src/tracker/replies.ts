import net from 'node:net'
import bencode from 'bencode'
import type { PeerEntry, SwarmStats } from './peer-table.ts'

const COMPACT_IPV4_LENGTH = 6
const COMPACT_IPV6_LENGTH = 18

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
    reply.peers = compactPeers(fields.peers, 4)
    // BEP 7: IPv6 peers cannot go into the 6-byte form, so they travel beside it.
    const v6 = compactPeers(fields.peers, 6)
    if (v6.length > 0) reply.peers6 = v6
  } else {
    reply.peers = fields.peers.map((p) => fields.noPeerId
      ? { ip: p.host, port: p.port }
      : { ip: p.host, port: p.port, 'peer id': p.peerId })
  }
  return bencode.encode(reply)
}

/** BEP 23 (IPv4, 6 bytes) or BEP 7 (IPv6, 18 bytes): address then big-endian port. */
function compactPeers (peers: PeerEntry[], family: 4 | 6): Uint8Array {
  const size = family === 4 ? COMPACT_IPV4_LENGTH : COMPACT_IPV6_LENGTH
  const selected = peers.filter((p) => net.isIP(p.host) === family)
  const out = Buffer.alloc(selected.length * size)
  selected.forEach((p, i) => {
    const offset = i * size
    if (family === 4) {
      p.host.split('.').forEach((octet, j) => { out[offset + j] = Number(octet) })
    } else {
      ipv6Bytes(p.host).forEach((byte, j) => { out[offset + j] = byte })
    }
    out.writeUInt16BE(p.port, offset + size - 2)
  })
  return out
}

function ipv6Bytes (host: string): number[] {
  // The URL parser canonicalises IPv6 (embedded IPv4 becomes hex groups), leaving only
  // '::' to expand. A zone id (fe80::1%eth0) means nothing to another host: dropped.
  const canonical = new URL(`http://[${host.split('%')[0]}]/`).hostname.slice(1, -1)
  const [head, tail = ''] = canonical.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === '' ? [] : tail.split(':')
  const zeros: string[] = Array(8 - headGroups.length - tailGroups.length).fill('0')
  return [...headGroups, ...zeros, ...tailGroups].flatMap((group) => {
    const value = parseInt(group, 16)
    return [value >> 8, value & 0xff]
  })
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
