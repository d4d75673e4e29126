import { isSiError } from '../errors.ts'
import { AUTO_SWARM_STALL_SECONDS } from './config.ts'
import type { EventSink } from './events.ts'

/**
 * `auto`: the swarm first, since with the server seeding it is never slower than unicast
 * (see docs/BENCHMARKS.md); unicast only when the swarm delivers nothing, e.g. when peer
 * ports are filtered between the nodes and the server.
 */
export async function deployAuto<R> (swarm: (stallSeconds: number) => Promise<R>, http: () => Promise<R>, emit: EventSink): Promise<R> {
  try {
    return await swarm(AUTO_SWARM_STALL_SECONDS)
  } catch (err) {
    if (!isSiError(err, 'ERR_DOWNLOAD_STALLED')) throw err
    emit({ type: 'warning', message: `swarm delivered nothing (${err.message}); falling back to --transport http` })
    return await http()
  }
}

