// The install's overrides: the plan lists them as the node applies them, each pinned to
// a version (the plan's own, then its groups' in groups.conf order, then the host's; the
// server resolved them). Their torrents come from the server's /overrides/ and are
// checked like the image's, before the first disk is touched (an unsigned one, one
// signed by another key, or an image passed off as an override fails there with
// ERR_UNTRUSTED); after the image's extraction each is fetched through its own swarm
// (the server's seeder and every other node laying it) and laid over the target in
// order, later layers replacing what earlier ones carry.
import { SiError } from '../errors.ts'
import type { Metainfo } from '../torrent/metainfo.ts'
import { loadTorrent } from '../deploy/torrent-source.ts'
import { deployImage } from '../deploy/deploy.ts'
import { besideTheImage, type DownloadSettings } from '../deploy/config.ts'
import { describeSources, type DeployEvent, type DeployResult } from '../deploy/events.ts'
import { nestedPhaseDetail, type InstallSink } from './install-events.ts'

export interface OverrideLayer {
  /** NAME@VERSION, as the plan pins it */
  ref: string
  metainfo: Metainfo
}

export interface LaidOverride {
  ref: string
  result: DeployResult
}

export interface FetchOverridesOptions {
  signal?: AbortSignal
  trustedKey?: string
  /** the plan's file on the server, for messages */
  planSource: string
}

/** The overrides' torrents, checked against the trusted key; a failure names the override. */
export async function fetchOverrideTorrents (server: string, refs: string[], opts: FetchOverridesOptions): Promise<OverrideLayer[]> {
  const layers: OverrideLayer[] = []
  for (const ref of refs) {
    const metainfo = await naming(`override ${ref} (plan ${opts.planSource})`, () => loadTorrent({ server, image: ref, collection: 'overrides' }, { signal: opts.signal, trustedKey: opts.trustedKey }))
    layers.push({ ref, metainfo })
  }
  return layers
}

/** What `fn` throws, its code kept, its message led by `what`. */
async function naming<T> (what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof SiError) throw new SiError(err.code, `${what}: ${err.message}`, { cause: err })
    throw err
  }
}

export interface LayOverridesOptions {
  target: string
  settings: DownloadSettings
  emit: InstallSink
  signal?: AbortSignal
}

/**
 * Each layer over the target, in order, through the swarm like the image. The target
 * keeps its .si-incomplete marker: the caller completes it after the last layer.
 */
export async function layOverrides (layers: OverrideLayer[], opts: LayOverridesOptions): Promise<LaidOverride[]> {
  const settings: DownloadSettings = { ...opts.settings, transport: besideTheImage(opts.settings.transport) }
  const laid: LaidOverride[] = []
  for (const [i, { ref, metainfo }] of layers.entries()) {
    opts.emit({ type: 'phase', phase: 'overrides', detail: `${ref} over the image (${i + 1} of ${layers.length}, ${metainfo.length} bytes)` })
    const result = await naming(`override ${ref}`, () => deployImage({ metainfo, target: opts.target, settings, extract: { overlay: true, keepMarker: true }, emit: overrideEvents(ref, opts.emit), signal: opts.signal }))
    const f = result.figures
    opts.emit({ type: 'phase', phase: 'overrides', detail: `${ref} laid: ${describeSources(f)}; ${f.uploaded} uploaded; left the swarm: ${result.leaveReason}` })
    laid.push({ ref, result })
  }
  return laid
}

/**
 * An override's download, as the install reports it: its steps are the overrides step's
 * (the fleet view shows the node finalizing, not downloading again); its figures and its
 * name are not the image's, so they are left out of the node's report; its end is the
 * summary layOverrides emits.
 */
function overrideEvents (ref: string, emit: InstallSink): (event: DeployEvent) => void {
  return event => {
    if (event.type === 'phase') emit({ type: 'phase', phase: 'overrides', detail: nestedPhaseDetail(ref, event) })
    else if (event.type === 'warning' || event.type === 'error') emit(event)
  }
}
