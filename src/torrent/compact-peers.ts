// Peer addresses in their compact form, as trackers (BEP 23, BEP 7) and PEX (BEP 11)
// carry them: 4 or 16 address bytes, then the port big-endian.
import net from 'node:net'

export interface PeerAddress { host: string; port: number }

export const COMPACT_IPV4_LENGTH = 6
export const COMPACT_IPV6_LENGTH = 18
const MAX_PORT = 65535

/** The peers of one family, packed; addresses of the other family are left out. */
export function encodeCompactPeers (peers: PeerAddress[], family: 4 | 6): Buffer {
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

/**
 * Unpacks the compact peers of one field (`peers`, `added6`, ...); `fail` throws the
 * caller's own error for what was wrong.
 */
export function decodeCompactPeers (bytes: Uint8Array, family: 4 | 6, field: string, fail: (problem: string) => never): PeerAddress[] {
  const size = family === 4 ? COMPACT_IPV4_LENGTH : COMPACT_IPV6_LENGTH
  if (bytes.length % size !== 0) fail(`compact ${field} length ${bytes.length} is not a multiple of ${size}`)
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  const peers: PeerAddress[] = []
  for (let offset = 0; offset < buf.length; offset += size) {
    const host = family === 4
      ? [...buf.subarray(offset, offset + 4)].join('.')
      : Array.from({ length: 8 }, (_, g) => buf.readUInt16BE(offset + g * 2).toString(16)).join(':')
    const port = buf.readUInt16BE(offset + size - 2)
    if (port < 1 || port > MAX_PORT) fail(`peer with invalid port ${port}`)
    peers.push({ host, port })
  }
  return peers
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
