// When a node that holds the whole image leaves the swarm. Leaving too early costs the
// others their uploader (the paper's 150-node run); staying forever delays the reboot.
import { SiError } from '../errors.ts'
import { abortableSleep } from './abortable-sleep.ts'

export const DEFAULT_UPLOAD_MIN_KIB = 50
export const DEFAULT_POLL_SECONDS = 2
export const DEFAULT_SEED_MAX_SECONDS = 600
/** Consecutive "no leecher left" answers before a swarm-aware node leaves. */
export const SWARM_EMPTY_CONFIRMATIONS = 2

export type SeedWait =
  | { kind: 'none' }
  | { kind: 'upload-min'; kibPerSecond: number }
  | { kind: 'swarm' }

export function parseSeedWait (text: string): SeedWait {
  if (text === 'none' || text === 'n' || text === 'no') return { kind: 'none' }
  if (text === 'swarm') return { kind: 'swarm' }
  if (text === 'upload-min' || text === 'y' || text === 'yes') return { kind: 'upload-min', kibPerSecond: DEFAULT_UPLOAD_MIN_KIB }
  const m = /^upload-min=(\d+(?:\.\d+)?)$/.exec(text)
  if (m !== null) return { kind: 'upload-min', kibPerSecond: Number(m[1]) }
  throw new SiError('ERR_INVALID_ARGUMENT', `--seed-wait ${JSON.stringify(text)}: expected none, upload-min=KIB_PER_S or swarm`)
}

export interface SeedProbe {
  /** current upload rate, bytes per second */
  uploadRate: () => number
  /** leechers other than us, as the tracker sees them; undefined when it cannot tell */
  leechers: () => Promise<number | undefined>
}

/** Resolves with the reason for leaving once the policy says so (or the bound is reached). */
export async function waitToLeave (policy: SeedWait, probe: SeedProbe, opts: { pollSeconds?: number; maxSeconds?: number; signal?: AbortSignal } = {}): Promise<string> {
  if (policy.kind === 'none') return 'seed-wait none'
  const pollMs = (opts.pollSeconds ?? DEFAULT_POLL_SECONDS) * 1000
  const deadline = Date.now() + (opts.maxSeconds ?? DEFAULT_SEED_MAX_SECONDS) * 1000
  let emptyAnswers = 0
  while (Date.now() < deadline) {
    await abortableSleep(Math.min(pollMs, Math.max(0, deadline - Date.now())), opts.signal, 'seeding')
    if (policy.kind === 'upload-min') {
      const kib = probe.uploadRate() / 1024
      if (kib < policy.kibPerSecond) return `upload ${kib.toFixed(1)} KiB/s fell under ${policy.kibPerSecond} KiB/s`
    } else {
      const leechers = await probe.leechers()
      emptyAnswers = leechers === 0 ? emptyAnswers + 1 : 0
      if (emptyAnswers >= SWARM_EMPTY_CONFIRMATIONS) return 'tracker reports no leecher left'
    }
  }
  return `seeded for the maximum of ${opts.maxSeconds ?? DEFAULT_SEED_MAX_SECONDS} s`
}

