// Our agent with each of its transports: bt (the swarm), http (web seed unicast), auto.
import type { Host } from '../cluster.ts'
import type { Transport, TrialContext } from './types.ts'

/** No verified byte for this long fails the node (the harness's own timeout is longer). */
export const AGENT_STALL_SECONDS = 120
/** How often a seeding agent re-reads the swarm's state for its leave decision. */
export const SEED_POLL_SECONDS = 1
/** Longest a finished agent keeps seeding. */
export const SEED_MAX_SECONDS = 600

export function agentArgs (ctx: TrialContext, node: Host, target: string, extra: string[]): string[] {
  return [
    ctx.agentBin, 'deploy',
    '--server', ctx.serverUrl,
    '--image', ctx.image.ref,
    '--target', target,
    '--staging', `${target}.staging`,
    '--json', '--no-report',
    '--node', node.name,
    '--stall-seconds', String(AGENT_STALL_SECONDS),
    ...extra
  ]
}

/** seedWait: none | upload-min=KIB | swarm (si-agent's --seed-wait). */
export function btTransport (seedWait = 'swarm', id = 'bt'): Transport {
  return {
    id,
    label: `si-agent bt (seed-wait ${seedWait})`,
    needsImageServer: true,
    agentEvents: true,
    unavailable: async () => undefined,
    nodeCommand: (ctx, node, target) => agentArgs(ctx, node, target, [
      '--transport', 'bt', '--seed-wait', seedWait, '--poll', String(SEED_POLL_SECONDS), '--seed-max', String(SEED_MAX_SECONDS)
    ])
  }
}

export function httpTransport (): Transport {
  return {
    id: 'http',
    label: 'HTTP unicast (si-agent --transport http)',
    needsImageServer: true,
    agentEvents: true,
    unavailable: async () => undefined,
    nodeCommand: (ctx, node, target) => agentArgs(ctx, node, target, ['--transport', 'http'])
  }
}

export function autoTransport (): Transport {
  return {
    id: 'auto',
    label: 'si-agent --transport auto',
    needsImageServer: true,
    agentEvents: true,
    unavailable: async () => undefined,
    nodeCommand: (ctx, node, target) => agentArgs(ctx, node, target, ['--transport', 'auto', '--seed-wait', 'swarm', '--poll', String(SEED_POLL_SECONDS)])
  }
}
