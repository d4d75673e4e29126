// udpcast: udp-sender on the server host, our agent with --transport multicast (which
// runs udp-receiver) on each node. The sender waits for all N receivers, then sends at a
// fixed rate just under the link rate: udpcast cannot sense the link, an administrator
// sets --max-bitrate.
import { SiError } from '../../../src/errors.ts'
import { HOST_DEV } from '../cluster.ts'
import { hasTool, spawnTracked, stopChild, tail } from '../exec.ts'
import { agentArgs } from './agent.ts'
import type { Transport } from './types.ts'

export const MCAST_PORTBASE = 9000
/** Fraction of the server's link rate given to udp-sender's --max-bitrate (headers take the rest). */
export const SENDER_RATE_FRACTION = 0.95
/**
 * The sender starts with fewer receivers than expected after this long; shorter than
 * the receivers' own start timeout (si-agent: 120 s), so that one receiver that never
 * joins delays the others instead of failing them all.
 */
const SENDER_MAX_WAIT_S = 60
/**
 * udpcast's negotiation is one connect request per receiver and one HELLO per sender,
 * unrepeated: when those were lost (seen at N=32 right after a bt trial, cause not
 * found), sender and receivers waited for each other until the receivers' start
 * timeout. The HELLO repeated each second lets late or unlucky receivers ask again, as
 * udp-sender's manual advises for lossy networks.
 */
const SENDER_HELLO_INTERVAL_MS = 1000

function oneLine (text: string): string {
  return text.split(/[\r\n]+/).map(l => l.trim()).filter(l => l !== '' && !l.startsWith('bytes=')).join(' / ')
}

export function multicastTransport (): Transport {
  return {
    id: 'multicast',
    label: 'udpcast multicast (si-agent --transport multicast)',
    needsImageServer: true, // the agent still takes the torrent (piece hashes) from it
    agentEvents: true,
    unavailable: async () => (await hasTool('udp-sender')) && (await hasTool('udp-receiver')) ? undefined : 'udp-sender/udp-receiver missing (Debian package udpcast)',
    startServerSide: async ctx => {
      const rate = Math.floor(ctx.cluster.server.link.rateMbit * SENDER_RATE_FRACTION * 1000)
      const child = spawnTracked('ip', ['netns', 'exec', ctx.cluster.server.ns, 'udp-sender',
        '--file', ctx.image.tarPath,
        '--interface', HOST_DEV,
        '--portbase', String(MCAST_PORTBASE),
        '--min-receivers', String(ctx.cluster.nodes.length),
        '--max-wait', String(SENDER_MAX_WAIT_S),
        '--rexmit-hello-interval', String(SENDER_HELLO_INTERVAL_MS),
        '--max-bitrate', `${rate}k`,
        '--nokbd', '--no-progress'
      ])
      const stderr = tail(child.stderr)
      child.stdout?.resume()
      return {
        stop: async () => {
          // udp-sender exits by itself once every receiver has the file.
          const finished = child.exitCode === 0
          await stopChild(child)
          if (!finished) throw new SiError('ERR_BENCH', `udp-sender did not finish (${child.exitCode ?? child.signalCode}): ${oneLine(stderr()).slice(-600)}`)
        }
      }
    },
    nodeCommand: (ctx, node, target) => agentArgs(ctx, node, target, ['--transport', 'multicast', '--mcast-interface', HOST_DEV, '--mcast-portbase', String(MCAST_PORTBASE)])
  }
}
