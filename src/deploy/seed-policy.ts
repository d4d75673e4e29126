// When a node that holds the whole image leaves the swarm. Leaving too early costs the
// others their uploader (the paper's 150-node run); staying forever delays the reboot.
import { OptionValueError } from '../config/options.ts'
import { abortableSleep } from './abortable-sleep.ts'

/** upload-min without a threshold: SystemImager's BITTORRENT_UPLOAD_MIN default, KiB/s. */
const UPLOAD_MIN_KIB = 50
/** Consecutive "no leecher left" answers before a swarm-aware node leaves. */
export const SWARM_EMPTY_CONFIRMATIONS = 2
/**
 * A swarm-aware seed nobody has fetched from for this long leaves whatever the tracker
 * counts: the leechers it names are then served by other seeds, cannot reach this one, or
 * are not real (a host announcing peer ids it never uses would otherwise hold every node
 * until --seed-max). A leecher connected to a seed fetches from it well within a minute.
 */
export const SWARM_IDLE_LEAVE_SECONDS = 60

export type SeedWait =
  | { kind: 'none' }
  | { kind: 'upload-min'; kibPerSecond: number }
  | { kind: 'swarm' }

/** none, swarm, upload-min[=KIB_PER_S], or SystemImager's y/n, in any case. */
export function parseSeedWait (text: string): SeedWait {
  const word = text.trim().toLowerCase()
  if (word === 'none' || word === 'n' || word === 'no') return { kind: 'none' }
  if (word === 'swarm') return { kind: 'swarm' }
  if (word === 'upload-min' || word === 'y' || word === 'yes') return { kind: 'upload-min', kibPerSecond: UPLOAD_MIN_KIB }
  const m = /^upload-min=(\d+(?:\.\d+)?)$/.exec(word)
  if (m !== null) return { kind: 'upload-min', kibPerSecond: Number(m[1]) }
  throw new OptionValueError('none, swarm, upload-min[=KIB_PER_S], y or n')
}

export interface SeedProbe {
  /** current upload rate, bytes per second */
  uploadRate: () => number
  /** leechers other than us, as the tracker sees them; undefined when it cannot tell */
  leechers: () => Promise<number | undefined>
}

/** Resolves with the reason for leaving once the policy says so (or the bound is reached). */
export async function waitToLeave (policy: SeedWait, probe: SeedProbe, opts: { pollSeconds: number; maxSeconds: number; idleSeconds?: number; signal?: AbortSignal }): Promise<string> {
  if (policy.kind === 'none') return 'seed-wait none'
  const pollMs = opts.pollSeconds * 1000
  const deadline = Date.now() + opts.maxSeconds * 1000
  const idleMs = (opts.idleSeconds ?? SWARM_IDLE_LEAVE_SECONDS) * 1000
  let emptyAnswers = 0
  let lastUpload = Date.now()
  while (Date.now() < deadline) {
    await abortableSleep(Math.min(pollMs, Math.max(0, deadline - Date.now())), opts.signal, 'seeding')
    if (policy.kind === 'upload-min') {
      const kib = probe.uploadRate() / 1024
      if (kib < policy.kibPerSecond) return `upload ${kib.toFixed(1)} KiB/s fell under ${policy.kibPerSecond} KiB/s`
    } else {
      const leechers = await probe.leechers()
      emptyAnswers = leechers === 0 ? emptyAnswers + 1 : 0
      if (emptyAnswers >= SWARM_EMPTY_CONFIRMATIONS) return 'tracker reports no leecher left'
      if (probe.uploadRate() > 0) lastUpload = Date.now()
      else if (Date.now() - lastUpload >= idleMs) return `no peer fetched from this node for ${idleMs / 1000} s though the tracker counts ${leechers ?? 'unknown'} leecher(s): others serve them, or they are not real`
    }
  }
  return `seeded for the maximum of ${opts.maxSeconds} s`
}

