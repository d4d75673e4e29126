// Our peer ids say which of our programs a peer is: nodes tell the image server's bytes
// from their peers' bytes, and skip haves that another agent does not need.
import { randomBytes } from 'node:crypto'

/** Peer ids of the image server's seeder start with this. */
export const SERVER_PEER_ID_PREFIX = '-SS'
/** Peer ids of our nodes' agents start with this: peers known to need no redundant haves. */
export const AGENT_PEER_ID_PREFIX = '-SI'
/** The client version in our peer ids (Azureus style: -XX0100-, then 12 random bytes). */
const PEER_ID_VERSION = '0100'
const RANDOM_BYTES = 12
const SERVER_PEER_ID_PREFIX_HEX = Buffer.from(SERVER_PEER_ID_PREFIX).toString('hex')
const AGENT_PEER_ID_PREFIX_HEX = Buffer.from(AGENT_PEER_ID_PREFIX).toString('hex')

/** A fresh 20-byte peer id for the server's seeder or a node's agent. */
export function newPeerId (prefix: typeof SERVER_PEER_ID_PREFIX | typeof AGENT_PEER_ID_PREFIX): Buffer {
  return Buffer.concat([Buffer.from(`${prefix}${PEER_ID_VERSION}-`), randomBytes(RANDOM_BYTES)])
}

/** Whether a peer id (hex) is the image server's seeder. */
export function isServerPeerId (peerIdHex: string): boolean {
  return peerIdHex.startsWith(SERVER_PEER_ID_PREFIX_HEX)
}

/** Whether a peer id (hex) is one of our agents. */
export function isAgentPeerId (peerIdHex: string): boolean {
  return peerIdHex.startsWith(AGENT_PEER_ID_PREFIX_HEX)
}
