// Every tunable of the BitTorrent engine, documented once, with its unit and why it has
// its value. Rows of docs/BENCHMARKS.md's Tuning table measured many of them. Protocol
// constants (block size, message ids, BEP limits) are not here: they are not ours to tune,
// and stay at the top of the module that speaks the protocol.
//
// A component takes `Partial` overrides merged over DEFAULT_SWARM_CONFIG; the Swarm
// resolves its config once and hands the same object to the parts it builds, each of
// which reads only its own slice (the `...Config` types below).
import { withDefaults } from '../config/defaults.ts'

export interface SwarmConfig {
  // --- connections -----------------------------------------------------------------
  /**
   * Connections to other nodes a swarm keeps at most. The image server's seeder is never
   * counted, so a node whose slots are full of peers still reaches it. 80 is above every
   * N the benchmarks run (Tuning row 20 measured 12 and 20 against all-to-all).
   */
  maxConnections: number
  /**
   * The share of `maxConnections` a node fills by dialling (0..1); the rest waits for
   * peers that dial it. If every node dialled up to the whole limit, the first to start
   * would fill each other's slots and a node starting late would find every peer full.
   * Kept free for peers that dial us, the other share guarantees room somewhere for every
   * newcomer (Tuning row 20).
   */
  dialShare: number
  /** ms a dial may take to connect before it is given up. */
  connectTimeoutMs: number
  /**
   * ms a connected peer has to send its handshake before it is dropped. A peer on the LAN
   * sends it within a round trip of connecting (or of our own); the longer a silent
   * connection may stay, the cheaper it is to hold the listener's pending slots.
   */
  handshakeTimeoutMs: number
  /**
   * Incoming connections that have not handshaken yet, at most, per listener: one TCP port
   * serves every torrent of a process, and a flood of silent connections must not hold
   * its memory. When it is full, the connection silent longest is dropped to make room: 256
   * connections renewed as they closed once held every slot, and a new agent got no byte
   * for the whole attack. An honest peer handshakes within a round trip of connecting, so
   * it is never the oldest.
   */
  maxPendingHandshakes: number
  /**
   * Of those, from one address at most; more are refused at once. A node dials a port
   * once per torrent, so one host's flood stays with this many of the slots.
   * This machine's loopback address is not capped (src/net-address.ts).
   */
  maxPendingHandshakesPerAddress: number
  /**
   * Connections of one swarm with one address at most, dialled or accepted. One node is one
   * address and one agent per torrent (a moment of two connections when both sides dial
   * at once): without the cap one host's 100 silent handshaken connections filled an
   * agent's --max-peers and the agents stopped exchanging with each other. Addresses
   * learnt by PEX are dialled within it too, so a peer listing its own host at many ports
   * cannot take our dial share either. This machine's loopback address is not capped.
   */
  maxConnectionsPerAddress: number
  /**
   * ms: a peer that has been of no use to us nor we to it for this long (neither side
   * downloading, nor waiting for the other's upload slot) gives its slot to a newcomer when
   * the connection limit is full, ours to dial or theirs dialling us. From many addresses,
   * silent handshaken connections would otherwise hold every slot; an honest peer is idle
   * only while neither side has a piece for the other, and is found again when it has.
   */
  idleEvictAfterMs: number
  /**
   * ms: ... and such a peer is dropped after this long even with slots to spare, once we
   * hold a piece to offer (a node with nothing and a peer with nothing are both waiting,
   * not idle) and unless we super-seed (peers wait there for the pieces we reveal).
   */
  idleTimeoutMs: number
  /**
   * Peer ids from one address convicted of sending corrupt data (smart-ban.ts: never a peer
   * that merely shared a failed piece with a liar) before the address itself is banned,
   * every connection from or to it refused. A liar that took a new peer id and port after
   * each ban cost each of 3 agents 67-73 hash failures (twice the image downloaded); one
   * conviction alone could be a node that shares a machine with the liar (NAT).
   */
  banAddressAfterConvictions: number
  /**
   * ms to wait before dialling again a peer that closed our connection before answering
   * the handshake (on a cluster, a node whose connection limit is full: dialling it at
   * every rechoke would only cost both sides a TCP handshake). Each refusal doubles the
   * wait, up to `dialMaxRetryMs`, so a node that frees a slot later is still found
   * (Tuning row 20: 5 s doubling to 60 s).
   */
  dialFirstRetryMs: number
  /** ms, the cap of that doubling wait. */
  dialMaxRetryMs: number
  /** Below this many peers an incomplete swarm asks the tracker for more before the next interval. */
  lowPeerCount: number
  /** ms between keep-alives on an otherwise quiet connection: well inside the two minutes after which clients commonly drop a silent one (BEP 3). */
  keepAliveIntervalMs: number

  // --- requesting --------------------------------------------------------------------
  /** ms between request top-ups besides those on every block: catches blocks freed by a choke or gone stale (endgame). */
  requestTickMs: number
  /** ms a peer may leave every request unanswered (counted from its last answer) before it is dropped and its blocks go elsewhere. */
  requestTimeoutMs: number
  /**
   * s: requests kept in flight per peer cover this much time at the peer's current rate.
   * The uploader answers a peer's requests in order, so a newly announced piece waits this
   * long behind the ones asked for before it: every relay hop (seed to node, node to node)
   * adds it to the nodes' lag behind the seed, and a node passes a piece on only once it is
   * whole. Tuning row 32: 1 -> 0.3 s cut that lag at N=8 from about 2.0 to 1.4 s and T by
   * about 1 s; row 3: 2 s was slower. Below this, `minPipeline` sets the depth.
   */
  requestQueueSeconds: number
  /**
   * Blocks a peer of unknown speed is asked for at once. Small, because on a deployment LAN
   * every node asks every other: 32 peers each holding 16 of our requests would queue half
   * a 16 MiB image ahead of us, seconds of latency that endgame then mistakes for stalls
   * (Tuning row 1: 16 -> 4; row 15: 8 measured no better).
   */
  minPipeline: number
  /** Blocks in flight to one peer at most, whatever its rate. */
  maxPipeline: number
  /**
   * A peer's queue is topped up once this share of it has drained (0..1), not after every
   * block: a pick per arriving block costs CPU that 32 peers make visible (Tuning row 4).
   */
  requestBatchFraction: number
  /**
   * The first pieces are picked at random: every node starts empty at about the same
   * time, rarest-first has nothing to rank yet and would make every node ask the seed for
   * the same pieces.
   */
  randomFirstPieces: number
  /** In endgame, how many peers may be asked for the same block at once. */
  endgameRequestsPerBlock: number
  /**
   * ms: in endgame a block is asked of a second peer only once its first request is this
   * old (at least; `endgameLatencyFactor` stretches it for a peer whose queue is long for
   * its rate): deep request queues on a LAN would otherwise duplicate most of the last pieces.
   */
  endgameAfterMs: number
  /**
   * Endgame asks a second peer for a block once the first has had this many times its
   * expected delivery time (its outstanding bytes / its rate) (Tuning row 1).
   */
  endgameLatencyFactor: number
  /** ms: ... but never waits longer than this for a peer that has gone quiet (Tuning row 7: 20 s was worse). */
  endgameMaxWaitMs: number

  // --- uploading ---------------------------------------------------------------------
  /**
   * Peers uploaded to at once. A cluster has no free-riders to punish: every interested
   * peer is unchoked while slots last (Tuning rows 10, 10b: 4 and 8 slots were slower,
   * choked peers wait for a slot).
   */
  uploadSlots: number
  /** ms between rechokes, which also dial more peers when the limit allows. */
  chokeIntervalMs: number
  /** ms a peer keeps its slot while others wait for one; then the longest-waiting go first. */
  rotateAfterMs: number
  /** Bytes of answered blocks allowed to wait in user space for a peer's socket. */
  uploadHighWaterBytes: number
  /**
   * Requests a peer may have queued with us; one asking for more at once is misbehaving.
   * Our extended handshake announces it (BEP 10 `reqq`) so that clients like Transmission
   * do not overrun it.
   */
  maxQueuedRequests: number
  /**
   * ms: while blocks stream in below the CPU's speed, every TCP segment would wake the
   * process on its own (about 860 a second at 10 Mbit/s). A read smaller than
   * `readHoldBelowBytes` on a connection we await blocks from pauses its reads this long,
   * so that the next read takes what arrived meanwhile in one go; the kernel acknowledges
   * the data all the same, so the transfer does not slow. Control messages are not held:
   * with no request outstanding, reads are served at once. Tuning row 25: N=32 33.3,
   * 34.5 s against 37.6, 36.1 s, agents' CPU -7 %; row 25b: 20 ms no better.
   */
  readHoldMs: number
  /** Bytes: reads at least this large are not held (see `readHoldMs`). */
  readHoldBelowBytes: number

  // --- super-seeding (the image server's seeder) -------------------------------------
  /** Pieces on offer to one peer at once, at least (more when the seed's capacity allows). */
  superSeedOffersPerPeer: number
  /** ms without a request for an offered piece after which the offer is stale and its slot free. */
  superSeedStaleOfferMs: number
  /**
   * ms: a peer shown no piece only it could get for this long is shown pieces others hold
   * too, rarest first: it may be cut off from those peers (seen once: a node of a second
   * wave left with the server as its only peer, shown nothing for two minutes). In a
   * healthy swarm no trial's tail comes near that long, so it costs no server bytes
   * (Tuning row 19).
   */
  superSeedStarvedAfterMs: number
  /**
   * Pieces a peer may be shown beyond the least-served peer still fetching from the seed.
   * Without it the seed's pieces went to the nodes at the pace each finished its offers,
   * and that pace fed itself: at N=4 and 8 one node got up to 0.76 F from the seed while
   * others got 0.05 F, and that node often finished last (Tuning row 24).
   */
  superSeedMaxShareLead: number
  /**
   * s of the seed's best upload rate kept in live offers. Showing every peer a piece at
   * once would split the seed's link N ways, and nobody could pass anything on meanwhile
   * (Tuning row 2; rows 9b, 9c: 1 s slower, 3 s the same).
   */
  superSeedOfferSeconds: number
  /** Live offers at least, whatever the rate (a seed that has sent nothing yet). */
  superSeedMinOffers: number

  // --- peer exchange (BEP 11) ----------------------------------------------------------
  /** ms between PEX messages: BEP 11 allows one a minute each way; a little more leaves room for timer drift. */
  pexIntervalMs: number
  /** ms: a PEX message arriving sooner than this after the last one is ignored (a peer flooding us). */
  pexMinReceiveIntervalMs: number

  // --- tracker client ----------------------------------------------------------------
  /** s between announces whatever the tracker says (still no faster than its min interval); undefined: the tracker's interval. */
  announceIntervalSeconds: number | undefined
  /** ms an announce or scrape may take. */
  announceTimeoutMs: number
  /** ms the 'stopped' announce may take: leaving must never delay a node's reboot by more than a moment. */
  leaveTimeoutMs: number
  /** s between early announces (peer count low) until the tracker has said what its min interval is. */
  defaultMinIntervalSeconds: number
  /**
   * ms before the first retry of a failed announce, doubling up to `trackerBackoffMaxMs`:
   * soon, for a tracker restart is brief.
   */
  trackerBackoffInitialMs: number
  /** ms, the cap of that doubling. */
  trackerBackoffMaxMs: number
  /**
   * ± share of each retry wait drawn at random (0..1): a thousand nodes that lost the
   * tracker together must not come back in lockstep.
   */
  trackerBackoffJitter: number
  /** Bytes of a tracker reply at most, so a confused or hostile server cannot hold the agent's memory: 200 peers in the dictionary form are about 20 KiB. */
  maxTrackerReplyBytes: number

  // --- piece store -------------------------------------------------------------------
  /**
   * Bytes of verified pieces kept in memory for uploads (whole pieces, the newest first):
   * peers ask for a piece's blocks one after another. Bytes, not pieces: 16 pieces were
   * 16 MiB of a small image but 64 MiB of a large one (4 MiB pieces). At least one piece
   * is kept whatever its size.
   */
  readCacheBytes: number
  /**
   * Bytes of one read of the payload in order (extraction's input): whatever the piece
   * size, the agent holds the payload in pieces of this size.
   */
  inOrderChunkBytes: number
  /**
   * Bytes of the payload read ahead of extraction, at most (a multiple of
   * `inOrderChunkBytes`): one read waits on the disk while extraction works on the one before.
   */
  inOrderAheadBytes: number
}

export const DEFAULT_SWARM_CONFIG: Readonly<SwarmConfig> = Object.freeze({
  maxConnections: 80,
  dialShare: 0.5,
  connectTimeoutMs: 5_000,
  handshakeTimeoutMs: 5_000,
  maxPendingHandshakes: 256,
  maxPendingHandshakesPerAddress: 4,
  maxConnectionsPerAddress: 4,
  idleEvictAfterMs: 10_000,
  idleTimeoutMs: 60_000,
  banAddressAfterConvictions: 2,
  dialFirstRetryMs: 5_000,
  dialMaxRetryMs: 60_000,
  lowPeerCount: 8,
  keepAliveIntervalMs: 60_000,

  requestTickMs: 1_000,
  requestTimeoutMs: 20_000,
  requestQueueSeconds: 0.3,
  minPipeline: 4,
  maxPipeline: 256,
  requestBatchFraction: 0.25,
  randomFirstPieces: 4,
  endgameRequestsPerBlock: 2,
  endgameAfterMs: 2_000,
  endgameLatencyFactor: 3,
  endgameMaxWaitMs: 5_000,

  uploadSlots: 64,
  chokeIntervalMs: 2_000,
  rotateAfterMs: 10_000,
  uploadHighWaterBytes: 1024 * 1024,
  maxQueuedRequests: 2048,
  readHoldMs: 10,
  readHoldBelowBytes: 16 * 1024,

  superSeedOffersPerPeer: 2,
  superSeedStaleOfferMs: 3_000,
  superSeedStarvedAfterMs: 20_000,
  superSeedMaxShareLead: 4,
  superSeedOfferSeconds: 2,
  superSeedMinOffers: 2,

  pexIntervalMs: 65_000,
  pexMinReceiveIntervalMs: 50_000,

  announceIntervalSeconds: undefined,
  announceTimeoutMs: 10_000,
  leaveTimeoutMs: 1_000,
  defaultMinIntervalSeconds: 5,
  trackerBackoffInitialMs: 2_000,
  trackerBackoffMaxMs: 60_000,
  trackerBackoffJitter: 0.25,
  maxTrackerReplyBytes: 256 * 1024,

  readCacheBytes: 16 * 1024 * 1024,
  inOrderChunkBytes: 1024 * 1024,
  inOrderAheadBytes: 2 * 1024 * 1024
})

/** The slices each part reads. */
export type PexConfig = Pick<SwarmConfig, 'pexIntervalMs' | 'pexMinReceiveIntervalMs'>
export type WireConfig = PexConfig & Pick<SwarmConfig, 'keepAliveIntervalMs'>
export type PeerConfig = WireConfig & Pick<SwarmConfig,
  'handshakeTimeoutMs' | 'uploadHighWaterBytes' | 'maxQueuedRequests' | 'readHoldMs' | 'readHoldBelowBytes'>
export type ListenerConfig = PeerConfig & Pick<SwarmConfig, 'maxPendingHandshakes' | 'maxPendingHandshakesPerAddress'>
export type DialBackoffConfig = Pick<SwarmConfig, 'dialFirstRetryMs' | 'dialMaxRetryMs'>
export type ConnectionConfig = PeerConfig & DialBackoffConfig & Pick<SwarmConfig,
  'maxConnections' | 'dialShare' | 'connectTimeoutMs' | 'maxConnectionsPerAddress' | 'idleEvictAfterMs' |
  'idleTimeoutMs' | 'banAddressAfterConvictions'>
export type PickerConfig = Pick<SwarmConfig, 'randomFirstPieces' | 'endgameRequestsPerBlock' | 'endgameAfterMs'>
export type RequestConfig = PickerConfig & Pick<SwarmConfig,
  'requestTimeoutMs' | 'requestQueueSeconds' | 'minPipeline' | 'maxPipeline' | 'requestBatchFraction' |
  'endgameLatencyFactor' | 'endgameMaxWaitMs'>
export type SuperSeedConfig = Pick<SwarmConfig,
  'superSeedOffersPerPeer' | 'superSeedStaleOfferMs' | 'superSeedStarvedAfterMs' | 'superSeedMaxShareLead'>
export type TrackerClientConfig = Pick<SwarmConfig,
  'announceIntervalSeconds' | 'announceTimeoutMs' | 'leaveTimeoutMs' | 'defaultMinIntervalSeconds' |
  'trackerBackoffInitialMs' | 'trackerBackoffMaxMs' | 'trackerBackoffJitter' | 'maxTrackerReplyBytes'>
export type PieceStoreConfig = Pick<SwarmConfig, 'readCacheBytes' | 'inOrderChunkBytes' | 'inOrderAheadBytes'>

/** A swarm part's config: its overrides over DEFAULT_SWARM_CONFIG. */
export function swarmConfig (overrides?: Partial<SwarmConfig>): Readonly<SwarmConfig> {
  return withDefaults(DEFAULT_SWARM_CONFIG, overrides)
}
