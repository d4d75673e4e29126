import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import { SiError, TRACKER_ERROR_CODE_KEY, isSiError } from '../errors.ts'
import { httpRequest } from '../http-client.ts'
import { bencodeKey, decodeFirstBencodeValue, isBencodeDict, type BencodeDict, type BencodeValue } from '../torrent/bencode.ts'
import { decodeCompactPeers, type PeerAddress } from '../torrent/compact-peers.ts'
import { DEFAULT_SWARM_CONFIG, swarmConfig, type TrackerClientConfig } from './config.ts'

const HASH_LENGTH = 20
const MAX_PORT = 65535
/** Failure reasons and warnings are cut to this many characters. */
const MAX_TEXT_LENGTH = 1024
/** Failed announces double their wait at most this many times (the cap is reached long before). */
const MAX_BACKOFF_DOUBLINGS = 16
const UNRESERVED = /^[A-Za-z0-9\-._~]$/

export interface AnnounceParams {
  infoHash: Uint8Array
  peerId: Uint8Array
  port: number
  uploaded: number
  downloaded: number
  left: number
  event?: 'started' | 'completed' | 'stopped'
  numwant?: number
}

export type { PeerAddress }

export interface AnnounceResult {
  interval: number
  minInterval?: number
  complete?: number
  incomplete?: number
  peers: PeerAddress[]
  warning?: string
}

export interface ScrapeResult { complete: number; incomplete: number; downloaded: number }

export interface RequestOptions {
  signal?: AbortSignal
  /** default SwarmConfig.announceTimeoutMs */
  timeoutMs?: number
  /** default SwarmConfig.maxTrackerReplyBytes */
  maxReplyBytes?: number
}

/** One BEP 3 announce; the reply is validated, any fault is an SiError naming the URL. */
export async function announce (announceUrl: string, params: AnnounceParams, opts: RequestOptions = {}): Promise<AnnounceResult> {
  checkParams(params)
  const query = [
    `info_hash=${percentEncode(params.infoHash)}`,
    `peer_id=${percentEncode(params.peerId)}`,
    `port=${params.port}`,
    `uploaded=${params.uploaded}`,
    `downloaded=${params.downloaded}`,
    `left=${params.left}`,
    'compact=1'
  ]
  if (params.event !== undefined) query.push(`event=${params.event}`)
  if (params.numwant !== undefined) query.push(`numwant=${params.numwant}`)
  const body = await fetchReply(announceUrl, withQuery(announceUrl, query), opts)
  return parseAnnounceReply(decodeReply(body, announceUrl), announceUrl)
}

/** BEP 48 scrape of one torrent through the scrape URL derived from `announceUrl`. */
export async function scrape (announceUrl: string, infoHash: Uint8Array, opts: RequestOptions = {}): Promise<ScrapeResult> {
  if (infoHash.length !== HASH_LENGTH) {
    throw new SiError('ERR_INVALID_ARGUMENT', `info hash must be ${HASH_LENGTH} bytes (got ${infoHash.length})`)
  }
  const scrapeUrl = scrapeUrlFor(announceUrl)
  const body = await fetchReply(scrapeUrl, withQuery(scrapeUrl, [`info_hash=${percentEncode(infoHash)}`]), opts)
  const reply = decodeReply(body, scrapeUrl)
  const files = reply.files
  if (!isBencodeDict(files)) throw replyError(scrapeUrl, 'scrape reply has no files dictionary')
  // `files` is keyed by the raw 20-byte hash (BEP 48), which the decoder keeps byte for byte.
  const key = bencodeKey(infoHash)
  // BEP 48: a torrent the tracker does not know is simply absent.
  if (!Object.hasOwn(files, key)) return { complete: 0, incomplete: 0, downloaded: 0 }
  const entry = files[key]
  if (!isBencodeDict(entry)) throw replyError(scrapeUrl, 'scrape entry is not a dictionary')
  return {
    complete: optionalCount(entry, 'complete', scrapeUrl) ?? 0,
    incomplete: optionalCount(entry, 'incomplete', scrapeUrl) ?? 0,
    downloaded: optionalCount(entry, 'downloaded', scrapeUrl) ?? 0
  }
}

/** BEP 48: the last path segment must begin with 'announce', which becomes 'scrape'. */
export function scrapeUrlFor (announceUrl: string): string {
  const url = parseUrl(announceUrl)
  const slash = url.pathname.lastIndexOf('/')
  const segment = url.pathname.slice(slash + 1)
  if (!segment.startsWith('announce')) {
    throw new SiError('ERR_INVALID_ARGUMENT', `tracker ${announceUrl} has no scrape URL (path does not end in announce)`)
  }
  url.pathname = url.pathname.slice(0, slash + 1) + 'scrape' + segment.slice('announce'.length)
  return url.toString()
}

export interface TrackerClientOptions {
  announceUrls: string[]
  infoHash: Uint8Array
  peerId: Uint8Array
  port: number
  getStats: () => { uploaded: number; downloaded: number; left: number }
  config?: Partial<TrackerClientConfig>
}

export interface TrackerClientEvents {
  announce: [result: AnnounceResult]
  /** the peers of a reply that named any */
  peers: [peers: PeerAddress[]]
  warning: [err: SiError]
}

/**
 * Keeps this peer announced to its trackers. Never emits 'error': a tracker fault must not
 * be able to crash the agent, the swarm goes on through PEX (LSD and DHT, which would also
 * find peers without a tracker, are not built).
 */
export class TrackerClient extends EventEmitter<TrackerClientEvents> {
  private readonly opts: TrackerClientOptions
  private readonly config: Readonly<TrackerClientConfig>
  private preferred = 0
  private timer: NodeJS.Timeout | undefined
  private timerAt = Infinity
  private inFlight: AbortController | undefined
  private pendingEvent: 'started' | 'completed' | undefined
  private rerun = false
  private failures = 0
  private lastSuccessAt = -Infinity
  private latest: AnnounceResult | undefined
  private started = false
  private stopping: Promise<void> | undefined

  constructor (opts: TrackerClientOptions) {
    super()
    if (opts.announceUrls.length === 0) throw new SiError('ERR_INVALID_ARGUMENT', 'no announce URL given')
    for (const url of opts.announceUrls) parseUrl(url)
    checkParams({ infoHash: opts.infoHash, peerId: opts.peerId, port: opts.port, uploaded: 0, downloaded: 0, left: 0 })
    this.opts = { ...opts, announceUrls: [...opts.announceUrls] }
    this.config = swarmConfig(opts.config)
  }

  /** The latest successful reply. */
  get last (): AnnounceResult | undefined {
    return this.latest
  }

  start (): void {
    if (this.started || this.stopping !== undefined) return
    this.started = true
    this.pendingEvent = 'started'
    void this.run()
  }

  /** Announces 'completed' at once: the tracker's counts drive other nodes' decisions. */
  completed (): void {
    if (!this.started || this.stopping !== undefined) return
    this.pendingEvent = 'completed'
    if (this.inFlight !== undefined) this.rerun = true
    else void this.run()
  }

  /** Asks for peers early (say the peer count ran low), no sooner than the min interval allows. */
  announceNow (): void {
    if (!this.started || this.stopping !== undefined || this.inFlight !== undefined) return
    // Without a reply yet, or while failing, the retries with backoff are already on it.
    if (this.latest === undefined || this.failures > 0) return
    const minMs = (this.latest.minInterval ?? this.config.defaultMinIntervalSeconds) * 1000
    const wait = this.lastSuccessAt + minMs - performance.now()
    if (wait <= 0) void this.run()
    else if (performance.now() + wait < this.timerAt) this.schedule(wait)
  }

  /** Clears timers, aborts what is in flight, then tells the tracker we left (1 s at most). */
  stop (): Promise<void> {
    if (this.stopping === undefined) this.stopping = this.leave()
    return this.stopping
  }

  private async leave (): Promise<void> {
    this.clearTimer()
    this.inFlight?.abort()
    if (!this.started) return
    try {
      const url = this.opts.announceUrls[this.preferred]
      await announce(url, { ...this.baseParams(), event: 'stopped', numwant: 0 }, { timeoutMs: this.config.leaveTimeoutMs, maxReplyBytes: this.config.maxTrackerReplyBytes })
    } catch (err) {
      this.emit('warning', asSiError(err))
    }
  }

  private async run (): Promise<void> {
    this.clearTimer()
    const event = this.pendingEvent
    const controller = new AbortController()
    this.inFlight = controller
    let result: AnnounceResult | undefined
    try {
      result = await this.announceAny({ ...this.baseParams(), event }, controller.signal)
    } catch (err) {
      if (this.stopping === undefined) this.emit('warning', asSiError(err))
    } finally {
      this.inFlight = undefined
    }
    if (this.stopping !== undefined) return

    let delayMs: number
    if (result !== undefined) {
      // A completed() that arrived meanwhile keeps its event pending.
      if (this.pendingEvent === event) this.pendingEvent = undefined
      this.failures = 0
      this.lastSuccessAt = performance.now()
      this.latest = result
      const intervalSeconds = this.config.announceIntervalSeconds ?? result.interval
      delayMs = Math.max(intervalSeconds, result.minInterval ?? 0) * 1000
    } else {
      this.failures++
      delayMs = this.backoffMs()
    }
    if (this.rerun) {
      this.rerun = false
      void this.run()
    } else {
      this.schedule(delayMs)
    }
    if (result !== undefined) {
      this.emit('announce', result)
      if (result.peers.length > 0) this.emit('peers', result.peers)
    }
  }

  /** Tries the tracker that answered last, then the others in order; undefined when none did. */
  private async announceAny (params: AnnounceParams, signal: AbortSignal): Promise<AnnounceResult | undefined> {
    const urls = this.opts.announceUrls
    for (let i = 0; i < urls.length; i++) {
      const index = (this.preferred + i) % urls.length
      try {
        const result = await announce(urls[index], params, { signal, timeoutMs: this.config.announceTimeoutMs, maxReplyBytes: this.config.maxTrackerReplyBytes })
        this.preferred = index
        return result
      } catch (err) {
        if (signal.aborted) return undefined
        this.emit('warning', asSiError(err))
      }
    }
    return undefined
  }

  private baseParams (): AnnounceParams {
    const { uploaded, downloaded, left } = this.opts.getStats()
    return { infoHash: this.opts.infoHash, peerId: this.opts.peerId, port: this.opts.port, uploaded, downloaded, left }
  }

  /** The wait before the next try after `failures` failed announces in a row. */
  private backoffMs (): number {
    const { trackerBackoffInitialMs, trackerBackoffMaxMs, trackerBackoffJitter } = this.config
    const base = Math.min(trackerBackoffMaxMs, trackerBackoffInitialMs * 2 ** Math.min(this.failures - 1, MAX_BACKOFF_DOUBLINGS))
    return base * (1 - trackerBackoffJitter + Math.random() * 2 * trackerBackoffJitter)
  }

  private schedule (delayMs: number): void {
    this.clearTimer()
    this.timerAt = performance.now() + delayMs
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.timerAt = Infinity
      void this.run()
    }, delayMs)
    // The swarm's own sockets keep the agent alive; this timer alone must not.
    this.timer.unref()
  }

  private clearTimer (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.timerAt = Infinity
  }
}

function asSiError (err: unknown): SiError {
  if (err instanceof SiError) return err
  return new SiError('ERR_TRACKER_REPLY', err instanceof Error ? err.message : String(err), { cause: err })
}

function checkParams (params: AnnounceParams): void {
  if (params.infoHash.length !== HASH_LENGTH) {
    throw new SiError('ERR_INVALID_ARGUMENT', `info hash must be ${HASH_LENGTH} bytes (got ${params.infoHash.length})`)
  }
  if (params.peerId.length !== HASH_LENGTH) {
    throw new SiError('ERR_INVALID_ARGUMENT', `peer id must be ${HASH_LENGTH} bytes (got ${params.peerId.length})`)
  }
  if (!Number.isInteger(params.port) || params.port < 1 || params.port > MAX_PORT) {
    throw new SiError('ERR_INVALID_ARGUMENT', `port out of range: ${params.port}`)
  }
  for (const key of ['uploaded', 'downloaded', 'left', 'numwant'] as const) {
    const value = params[key]
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
      throw new SiError('ERR_INVALID_ARGUMENT', `${key} must be a non-negative integer (got ${value})`)
    }
  }
}

/** RFC 3986: everything but the unreserved characters is escaped, so binary survives any tracker. */
function percentEncode (bytes: Uint8Array): string {
  let out = ''
  for (const byte of bytes) {
    const ch = String.fromCharCode(byte)
    out += UNRESERVED.test(ch) ? ch : '%' + byte.toString(16).toUpperCase().padStart(2, '0')
  }
  return out
}

function withQuery (url: string, params: string[]): string {
  const hash = url.indexOf('#')
  const base = hash === -1 ? url : url.slice(0, hash)
  return base + (base.includes('?') ? '&' : '?') + params.join('&')
}

function parseUrl (text: string): URL {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new SiError('ERR_INVALID_ARGUMENT', `not a tracker URL: ${text}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SiError('ERR_INVALID_ARGUMENT', `tracker URL must be http or https: ${text}`)
  }
  return url
}

/** GET with a deadline, an abort signal and a size cap; only HTTP 200 is a reply. */
async function fetchReply (baseUrl: string, fullUrl: string, opts: RequestOptions): Promise<Uint8Array> {
  const maxBytes = opts.maxReplyBytes ?? DEFAULT_SWARM_CONFIG.maxTrackerReplyBytes
  let res
  try {
    res = await httpRequest(fullUrl, {
      headers: { Accept: 'text/plain' },
      signal: opts.signal,
      timeoutMs: opts.timeoutMs ?? DEFAULT_SWARM_CONFIG.announceTimeoutMs,
      maxBytes,
      maxRedirects: 0,
      name: `tracker ${baseUrl}`
    })
  } catch (err) {
    // A reply too long is the tracker's fault, not the network's.
    if (isSiError(err, 'ERR_HTTP_STATUS')) throw replyError(baseUrl, `reply larger than ${maxBytes} bytes`)
    throw err
  }
  if (res.status !== 200) throw replyError(baseUrl, `HTTP ${res.status} ${res.statusMessage}`.trim())
  return res.body
}

function replyError (url: string, problem: string): SiError {
  return new SiError('ERR_TRACKER_REPLY', `tracker ${url}: ${problem}`)
}

/** Decodes a whole reply as one bencoded dictionary; a tracker's failure reason becomes an error. */
function decodeReply (body: Uint8Array, url: string): BencodeDict {
  const notOneDictionary = (): SiError => replyError(url, 'reply is not a single bencoded dictionary')
  if (body.length === 0) throw notOneDictionary()
  let first
  try {
    first = decodeFirstBencodeValue(body, { maxBytes: body.length })
  } catch (err) {
    throw replyError(url, `reply is not bencoded (${err instanceof Error ? err.message : String(err)})`)
  }
  const value = first.value
  // Anything after the first value means this is not a tracker reply.
  if (!isBencodeDict(value) || first.end !== body.length) throw notOneDictionary()
  const failure = value['failure reason']
  if (failure !== undefined) {
    const reason = `refused: ${text(failure) ?? 'no reason given'}`
    // Our tracker says so when the image was removed: the download can never finish.
    if (text(value[TRACKER_ERROR_CODE_KEY]) === 'ERR_IMAGE_REMOVED') throw new SiError('ERR_IMAGE_REMOVED', `tracker ${url}: ${reason}`)
    throw replyError(url, reason)
  }
  return value
}

function parseAnnounceReply (reply: BencodeDict, url: string): AnnounceResult {
  const interval = reply.interval
  if (!Number.isSafeInteger(interval) || (interval as number) < 1) {
    throw replyError(url, interval === undefined ? 'reply has no interval' : `bad interval ${String(interval)}`)
  }
  const minInterval = optionalCount(reply, 'min interval', url)
  const result: AnnounceResult = {
    interval: interval as number,
    peers: [...peerList(reply.peers, 4, url), ...peerList(reply.peers6, 6, url)]
  }
  if (minInterval !== undefined) result.minInterval = minInterval
  const complete = optionalCount(reply, 'complete', url)
  if (complete !== undefined) result.complete = complete
  const incomplete = optionalCount(reply, 'incomplete', url)
  if (incomplete !== undefined) result.incomplete = incomplete
  const warning = text(reply['warning message'])
  if (warning !== undefined) result.warning = warning
  return result
}

function peerList (value: BencodeValue | undefined, family: 4 | 6, url: string): PeerAddress[] {
  const field = family === 4 ? 'peers' : 'peers6'
  if (value === undefined) return []
  if (value instanceof Uint8Array) return decodeCompactPeers(value, family, field, problem => { throw replyError(url, problem) })
  if (family === 4 && Array.isArray(value)) return value.map((entry) => dictPeer(entry, url))
  throw replyError(url, `${field} is neither a compact string nor a list`)
}

function dictPeer (entry: BencodeValue, url: string): PeerAddress {
  if (!isBencodeDict(entry)) throw replyError(url, 'peer list entry is not a dictionary')
  const host = text(entry.ip)
  if (host === undefined || host === '') throw replyError(url, 'peer list entry has no ip')
  if (!Number.isSafeInteger(entry.port)) throw replyError(url, 'peer list entry has no integer port')
  return { host, port: checkPort(entry.port as number, url) }
}

function checkPort (port: number, url: string): number {
  if (port < 1 || port > MAX_PORT) throw replyError(url, `peer with invalid port ${port}`)
  return port
}

function optionalCount (dict: BencodeDict, key: string, url: string): number | undefined {
  const value = dict[key]
  if (value === undefined) return undefined
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw replyError(url, `bad ${key} ${String(value)}`)
  return value as number
}

function text (value: BencodeValue | undefined): string | undefined {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8').slice(0, MAX_TEXT_LENGTH)
  return undefined
}
