// The agent's job, start to end: torrent -> swarm -> verified pieces -> extraction ->
// target -> seeding by policy -> report. Extraction reads the payload in order as pieces
// are verified, so it overlaps the download instead of waiting for it.
//
// Before a byte is fetched, the staging area and the target are checked for room. A run
// that dies keeps its staging file and resume data: the next run of the same image
// starts from the pieces they hold, and extracts again over what the dead run left
// (the target's .si-incomplete marker says it did not finish).
import { rm } from 'node:fs/promises'
import { SiError, describeError, isSiError } from '../errors.ts'
import type { Metainfo } from '../torrent/metainfo.ts'
import { PeerListener } from '../swarm/peer-listener.ts'
import { PieceStore } from '../swarm/piece-store.ts'
import { AGENT_PEER_ID_PREFIX, Swarm, newPeerId } from '../swarm/swarm.ts'
import { TokenBucket } from '../swarm/token-bucket.ts'
import { scrape, type PeerAddress } from '../swarm/tracker-client.ts'
import { extractTar, type ExtractOptions } from './extract.ts'
import type { Times } from '../image/times.ts'
import { checkSpace, targetNeed, type SpaceNeed } from './space.ts'
import { chooseStaging, claimStagingFile, removeDeadStaging, stagingDirs } from './staging.ts'
import { ensureTargetDir } from './target-dir.ts'
import { waitToLeave, type SeedWait } from './seed-policy.ts'
import type { DeployResult, EventSink, Phase, ProgressFigures } from './events.ts'
import { peakRssBytes } from './peak-rss.ts'

export const PROGRESS_INTERVAL_MS = 500
/**
 * The agent's upload cache: half the server's (at least one piece still). Its staging
 * file is usually in RAM already, where a miss costs one read from tmpfs, and what the
 * agent holds is taken from a node's RAM beside the image: /usr's peak 169-175 -> 158-165
 * MiB (docs/BENCHMARKS.md, Tuning row 37).
 */
const AGENT_STORE_CONFIG = { readCacheBytes: 8 * 1024 * 1024 }

export interface SwarmDeployOptions {
  metainfo: Metainfo
  target: string
  staging?: string
  seedWait: SeedWait
  seedMaxSeconds: number
  pollSeconds: number
  peerHost: string
  peerPort: number
  /** extra peers to dial at once (besides the tracker's) */
  peers?: PeerAddress[]
  maxConnections: number
  uploadSlots?: number
  /** no verified byte for this long, with the swarm still incomplete: give up with a clear error */
  stallSeconds: number
  /** cap on this node's upload to its peers, bytes per second */
  uploadBytesPerSecond?: number
  /** keepMarker when overrides follow; overlay when this torrent is an override */
  extract?: Pick<ExtractOptions, 'keepMarker' | 'overlay'>
  emit: EventSink
  signal?: AbortSignal
}

export async function deploySwarm (opts: SwarmDeployOptions): Promise<DeployResult> {
  const started = Date.now()
  const meta = opts.metainfo
  const abort = new AbortController()
  const signal = opts.signal === undefined ? abort.signal : AbortSignal.any([opts.signal, abort.signal])
  let phase: Phase = 'staging'
  let extractedEntries = 0

  await ensureTargetDir(opts.target)
  const staging = await chooseStaging({ size: meta.length, explicit: opts.staging, target: opts.target })
  for (const gone of await removeDeadStaging(stagingDirs(opts.target, opts.staging), meta.infoHashHex, staging.dir)) {
    opts.emit({ type: 'warning', message: `removed ${gone}, left by a run that is gone` })
  }
  const stagingFile = await claimStagingFile(staging.dir, meta.infoHashHex)
  let store: PieceStore
  let finished = false
  try {
    await checkSpace(await spaceNeeds(opts, staging.dir, stagingFile.allocatedBytes))
    const opened = await (stagingFile.resumable
      ? PieceStore.openResumable(stagingFile.path, meta, meta.infoHashHex, AGENT_STORE_CONFIG)
      : PieceStore.createStaging(stagingFile.path, meta, AGENT_STORE_CONFIG).then(s => ({ store: s, resumed: { pieces: 0, rehashed: 0 } })))
    store = opened.store
    const { pieces, rehashed } = opened.resumed
    const resumed = pieces > 0 || rehashed > 0 ? `; resuming with ${pieces} of ${meta.pieceCount} pieces from an earlier run${rehashed > 0 ? ` (${rehashed} hashed again)` : ''}` : ''
    opts.emit({ type: 'phase', phase: 'staging', detail: `${staging.dir} (${staging.kind}: ${staging.reason})${resumed}` })
  } catch (err) {
    await stagingFile.release(false)
    throw err
  }
  const listener = new PeerListener()
  let swarm: Swarm | undefined
  let ticker: NodeJS.Timeout | undefined
  let downloadSeconds = 0

  const figures = (): ProgressFigures => {
    const s = swarm?.stats()
    return {
      verifiedBytes: s?.verifiedBytes ?? 0,
      length: meta.length,
      progress: s === undefined ? 0 : s.verifiedBytes / meta.length,
      downloadRate: s?.downloadRate ?? 0,
      uploadRate: s?.uploadRate ?? 0,
      peers: s?.peers ?? 0,
      seeds: s?.seeds ?? 0,
      downloaded: s?.downloaded ?? 0,
      downloadedFromServer: s?.downloadedFromServer ?? 0,
      uploaded: s?.uploaded ?? 0,
      extractedEntries,
      hashFailures: s?.hashFailures ?? 0
    }
  }

  try {
    await listener.start(opts.peerHost, opts.peerPort)
    listener.on('warning', err => opts.emit({ type: 'warning', message: describeError(err) }))
    swarm = new Swarm({
      infoHash: meta.infoHash,
      peerId: newPeerId(AGENT_PEER_ID_PREFIX),
      store,
      listener,
      announceUrls: meta.announce,
      config: { maxConnections: opts.maxConnections, uploadSlots: opts.uploadSlots },
      uploadLimit: opts.uploadBytesPerSecond === undefined ? undefined : new TokenBucket(opts.uploadBytesPerSecond)
    })
    const active = swarm
    active.on('warning', err => opts.emit({ type: 'warning', message: describeError(err) }))
    active.on('peer-banned', (key, reason) => opts.emit({ type: 'warning', message: `dropped peer ${key}: ${reason}` }))
    // A peer that broke the protocol or left requests unanswered is worth a line; resets of
    // peers that finished and left are routine, and a ban is reported above.
    active.on('peer-error', (key, err) => {
      if (isSiError(err, 'ERR_PEER_PROTOCOL')) opts.emit({ type: 'warning', message: `dropped peer ${key}: ${err.message}` })
    })
    active.start()
    for (const p of opts.peers ?? []) active.addPeerAddress(p)
    phase = 'download'
    opts.emit({ type: 'phase', phase, detail: `${meta.name}: ${meta.length} bytes in ${meta.pieceCount} pieces of ${meta.pieceLength}; listening for peers on port ${listener.port}` })
    ticker = setInterval(() => opts.emit({ type: 'progress', phase, ...figures() }), PROGRESS_INTERVAL_MS)

    const complete = waitForComplete(active, signal, opts.stallSeconds * 1000)
      .then(() => { downloadSeconds = (Date.now() - started) / 1000 })
    // Pulled straight from the store: a stream between them would buffer 16 of its chunks
    // (Readable.from's object high-water mark), the piece store's bound is the only one.
    const extracted = extractTar(store.readInOrder(signal), opts.target, {
      ...opts.extract,
      signal,
      onEntry: () => { extractedEntries++ },
      // Its chunks come back once extraction is done with them, and are read into again.
      release: chunk => store.releaseChunk(chunk)
    })
    // Whichever fails first stops the other.
    const [, extractResult] = await Promise.all([complete, extracted].map(p => p.catch(err => { abort.abort(); throw err }))) as [void, Awaited<typeof extracted>]
    if (!active.isComplete) throw new SiError('ERR_DOWNLOAD_STALLED', 'extraction ended before the download completed')

    phase = 'seeding'
    opts.emit({ type: 'phase', phase, detail: describeSeedWait(opts.seedWait) })
    const leaveReason = await waitToLeave(opts.seedWait, {
      uploadRate: () => active.stats().uploadRate,
      leechers: () => countLeechers(meta, signal)
    }, { pollSeconds: opts.pollSeconds, maxSeconds: opts.seedMaxSeconds, signal })
    clearInterval(ticker)
    ticker = undefined
    const final = figures()
    const seconds = (Date.now() - started) / 1000
    const { lastPiece } = active.stats()
    opts.emit({ type: 'done', phase: 'done', seconds, downloadSeconds, peakRssBytes: peakRssBytes(), leaveReason, ...final, ...(lastPiece !== undefined ? { lastPiece } : {}) })
    finished = true
    return { seconds, downloadSeconds, figures: final, leaveReason, ...(extractResult.rootTimes !== undefined ? { rootTimes: extractResult.rootTimes } : {}) }
  } finally {
    clearInterval(ticker)
    abort.abort()
    await swarm?.stop()
    await listener.stop()
    await store.close()
    // A failed run leaves its pieces to the next (removed then if it deploys another image).
    await stagingFile.release(!finished)
    if (staging.kind === 'disk' && finished) await rm(staging.dir, { recursive: true, force: true })
  }
}

/** The payload in staging (less what an earlier run already wrote there), and the target's share. */
async function spaceNeeds (opts: SwarmDeployOptions, stagingDir: string, allocated: number): Promise<SpaceNeed[]> {
  const target = await targetNeed(opts.metainfo, opts.target, opts.extract?.overlay === true)
  return [{ what: 'staging', dir: stagingDir, bytes: Math.max(0, opts.metainfo.length - allocated) }, ...(target !== undefined ? [target] : [])]
}

function waitForComplete (swarm: Swarm, signal: AbortSignal, stallMs: number): Promise<void> {
  if (swarm.isComplete) return Promise.resolve()
  return new Promise((resolve, reject) => {
    let lastProgress = Date.now()
    const watchdog = setInterval(() => {
      if (Date.now() - lastProgress > stallMs) finish(new SiError('ERR_DOWNLOAD_STALLED', `no verified data for ${Math.round(stallMs / 1000)} s (${swarm.stats().peers} peers connected)`))
    }, 1000)
    const onVerified = (): void => { lastProgress = Date.now() }
    const onComplete = (): void => finish()
    const onAbort = (): void => finish(new SiError('ERR_ABORTED', 'download aborted'))
    // The server removed the image: nothing more will come, so stop now rather than stall.
    const onWarning = (err: Error): void => { if (isSiError(err, 'ERR_IMAGE_REMOVED')) finish(err) }
    const finish = (err?: Error): void => {
      clearInterval(watchdog)
      swarm.off('verified', onVerified)
      swarm.off('complete', onComplete)
      swarm.off('warning', onWarning)
      signal.removeEventListener('abort', onAbort)
      if (err === undefined) resolve(); else reject(err)
    }
    swarm.on('verified', onVerified)
    swarm.on('complete', onComplete)
    swarm.on('warning', onWarning)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

async function countLeechers (meta: Metainfo, signal: AbortSignal): Promise<number | undefined> {
  for (const url of meta.announce) {
    try {
      return (await scrape(url, meta.infoHash, { signal, timeoutMs: 3_000 })).incomplete
    } catch { /* try the next tracker */ }
  }
  return undefined
}

function describeSeedWait (policy: SeedWait): string {
  switch (policy.kind) {
    case 'none': return 'leaving the swarm now (--seed-wait none)'
    case 'upload-min': return `seeding until upload falls under ${policy.kibPerSecond} KiB/s`
    case 'swarm': return 'seeding until the tracker reports no leecher left, or nobody fetches from this node for a minute'
  }
}
