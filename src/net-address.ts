// Remote hosts as the tracker and the peer listeners count them: the per-host caps and
// the address bans take "one address = one machine", which holds on the NAT-less LANs
// clusters are installed on.

const MAPPED_IPV4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i

/**
 * Loopback addresses a connection from this very machine comes from. No packet from the
 * network can carry them (the kernel drops such martians), so a peer there is a program
 * on this host, not someone on the LAN: several agents on one machine (tests, the demo)
 * are told apart by their peer ids, and the per-host caps and bans do not lump them
 * together. Other 127/8 addresses are not in this set: tests emulate other hosts there.
 */
const THIS_MACHINE = new Set(['127.0.0.1', '::1'])

/** A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; they are counted, listed and dialled as a.b.c.d. */
export function normaliseHost (address: string): string {
  return MAPPED_IPV4.exec(address)?.[1] ?? address
}

/** Whether a (normalised) host is this machine's own loopback address: see THIS_MACHINE. */
export function isThisMachine (host: string): boolean {
  return THIS_MACHINE.has(host)
}
