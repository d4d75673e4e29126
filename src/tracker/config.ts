// Every tunable of the HTTP tracker, documented once with its unit and why it has its value.
import { withDefaults } from '../config/defaults.ts'

export interface TrackerConfig {
  /**
   * s between a peer's announces. Short on purpose: during a deployment a new node should
   * hear of its peers within seconds, and a few hundred tiny requests per second cost the
   * server nothing.
   */
  intervalSeconds: number
  /** s a peer must wait between announces of its own accord; undefined: a third of the interval, at least 1. */
  minIntervalSeconds: number | undefined
  /** Peers in one reply at most, whatever numwant asks for. */
  maxPeersPerReply: number
  /** Peers in a reply when numwant is absent or unreadable (BEP 3 suggests 50). */
  defaultNumwant: number
  /** s a peer stays listed without announcing; undefined: `peerTtlIntervals` intervals. Fractions allowed (tests). */
  peerTtlSeconds: number | undefined
  /** Intervals a peer may miss before it is forgotten: one lost announce must not drop it. */
  peerTtlIntervals: number
  /**
   * Peers per torrent at most: bounds the memory the swarms can make the server spend. Sized
   * for the largest fleet a server installs at once (20 000 nodes) with room for agents
   * restarted within a TTL (scripts/bench-tracker.ts measures memory and CPU at that size).
   */
  maxPeersPerSwarm: number
  /**
   * Peers one address may have listed in one torrent. On a cluster LAN one node is one
   * address and runs one agent per image, so a handful covers an agent restarted on a new
   * port before its old entry expired; without the cap one host announcing thousands of peer
   * ids filled the swarm and every agent that started after was refused. An address over
   * the cap loses its least recently announced entry, so the flood displaces only its own.
   * This machine's loopback address is not capped (src/net-address.ts: agents on one host).
   */
  maxPeersPerAddress: number
  /**
   * Torrents tracked at most. Only the torrents the server serves are tracked, so this is
   * a bound on the repository, not on what the LAN can send.
   */
  maxSwarms: number
  /** ms: expired peers are swept every half TTL, but no more often than this ... */
  minSweepMs: number
  /** ms: ... and no less often than this. */
  maxSweepMs: number
}

export const DEFAULT_TRACKER_CONFIG: Readonly<TrackerConfig> = Object.freeze({
  intervalSeconds: 15,
  minIntervalSeconds: undefined,
  maxPeersPerReply: 200,
  defaultNumwant: 50,
  peerTtlSeconds: undefined,
  peerTtlIntervals: 3,
  maxPeersPerSwarm: 25_000,
  maxPeersPerAddress: 4,
  maxSwarms: 1024,
  minSweepMs: 50,
  maxSweepMs: 60_000
})

export function trackerConfig (overrides?: Partial<TrackerConfig>): Readonly<TrackerConfig> {
  return withDefaults(DEFAULT_TRACKER_CONFIG, overrides)
}
