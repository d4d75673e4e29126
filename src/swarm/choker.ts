// Chooses which interested peers we upload to. A cluster has no free-riders to punish, so
// there is no tit-for-tat: every interested peer is unchoked while the slots allow, and
// when there are more interested peers than slots, the slots rotate so that nobody waits
// for long (longest-waiting first), which keeps the swarm's pieces spreading evenly.
import { DEFAULT_SWARM_CONFIG } from './config.ts'

export interface ChokeCandidate {
  id: string
  interested: boolean
  unchoked: boolean
  /** when we last unchoked it (0: never) */
  unchokedSince: number
  /** when it was last choked or connected: how long it has waited */
  waitingSince: number
}

/** `rotateAfterMs`: SwarmConfig.rotateAfterMs. */
export function selectUnchoked (candidates: ChokeCandidate[], slots: number, now: number, rotateAfterMs = DEFAULT_SWARM_CONFIG.rotateAfterMs): Set<string> {
  const interested = candidates.filter(c => c.interested)
  if (interested.length <= slots) return new Set(interested.map(c => c.id))

  const keep = interested
    .filter(c => c.unchoked && now - c.unchokedSince < rotateAfterMs)
    .sort((a, b) => b.unchokedSince - a.unchokedSince)
    .slice(0, slots)
  const chosen = new Set(keep.map(c => c.id))
  const waiting = interested
    .filter(c => !chosen.has(c.id))
    .sort((a, b) => (a.unchoked === b.unchoked ? a.waitingSince - b.waitingSince : a.unchoked ? 1 : -1))
  for (const c of waiting) {
    if (chosen.size >= slots) break
    chosen.add(c.id)
  }
  return chosen
}
