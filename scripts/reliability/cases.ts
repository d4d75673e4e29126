// The faults `make reliability` survives, each a case: how the cluster's links are made
// and what is done to the running deployment. A case passes when every node ends with
// the verified image, identical to its source tree; the harness (scripts/bench/trial.ts)
// checks every node that reports done against the tree, so data that differs cannot pass.
import { run, sleep } from '../bench/exec.ts'
import type { Cluster } from '../bench/cluster.ts'
import type { LinkSpec } from '../bench/shaping.ts'
import type { TrialControl } from '../bench/trial.ts'

/** How often an injector looks at the deployment's progress. */
const POLL_MS = 250
/** An injector that waits for progress gives up after this long (the trial goes on). */
const PROGRESS_WAIT_MS = 180_000

export interface CaseContext {
  cluster: Cluster
  imageBytes: number
  log: (line: string) => void
}

export interface ReliabilityCase {
  id: string
  title: string
  /** what is done, for the table */
  fault: string
  /** the links of every host (default: the run's rate, no loss) */
  link?: (base: LinkSpec) => LinkSpec
  during?: (control: TrialControl, ctx: CaseContext) => Promise<void>
}

/** Waits until the nodes together hold `fraction` of what they will hold; false if the trial ended first. */
export async function untilProgress (control: TrialControl, ctx: CaseContext, fraction: number): Promise<boolean> {
  const deadline = Date.now() + PROGRESS_WAIT_MS
  const want = fraction * ctx.imageBytes * ctx.cluster.nodes.length
  while (!control.finished() && Date.now() < deadline) {
    if (control.verifiedBytes().reduce((a, b) => a + b, 0) >= want) return true
    await sleep(POLL_MS)
  }
  return false
}

/** Sleeps, but no longer than the trial lasts. */
export async function pause (control: TrialControl, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (!control.finished() && Date.now() < until) await sleep(Math.min(POLL_MS, until - Date.now()))
}

const SERVER_DOWN_MS = 10_000
const NODES_DOWN_MS = 3_000
const LINK_DOWN_MS = 30_000
const LOSS = 0.05

export const CASES: ReliabilityCase[] = [
  {
    id: 'baseline',
    title: 'no fault',
    fault: 'none (the reference run)'
  },
  {
    id: 'server-restart',
    title: 'server killed and restarted',
    fault: `si-server SIGKILLed at 30 % of the deployment, started again ${SERVER_DOWN_MS / 1000} s later`,
    during: async (control, ctx) => {
      if (!await untilProgress(control, ctx, 0.3)) return
      ctx.log(`server-restart: killing si-server at ${control.now().toFixed(1)} s`)
      await control.crashServer()
      await pause(control, SERVER_DOWN_MS)
      ctx.log(`server-restart: starting si-server again at ${control.now().toFixed(1)} s`)
      await control.restartServer()
    }
  },
  {
    id: 'agents-restart',
    title: 'a quarter of the agents killed and restarted',
    fault: `every 4th agent SIGKILLed at 40 % of the deployment, started again ${NODES_DOWN_MS / 1000} s later on the same target and staging`,
    during: async (control, ctx) => {
      if (!await untilProgress(control, ctx, 0.4)) return
      const victims = ctx.cluster.nodes.map((_, i) => i).filter(i => i % 4 === 0)
      ctx.log(`agents-restart: killing ${victims.map(i => ctx.cluster.nodes[i].name).join(', ')} at ${control.now().toFixed(1)} s`)
      await Promise.all(victims.map(async i => { await control.crashNode(i) }))
      await pause(control, NODES_DOWN_MS)
      for (const i of victims) control.relaunchNode(i)
    }
  },
  {
    id: 'link-down',
    title: 'one link down for 30 s',
    fault: `n1's switch port down at 25 % of the deployment, up again ${LINK_DOWN_MS / 1000} s later`,
    during: async (control, ctx) => {
      if (!await untilProgress(control, ctx, 0.25)) return
      const node = ctx.cluster.nodes[0]
      ctx.log(`link-down: ${node.name}'s port down at ${control.now().toFixed(1)} s`)
      // The switch side of the cable: the node sees its carrier go, keeps its address and routes.
      await run('ip', ['-n', ctx.cluster.bridgeNs, 'link', 'set', node.port, 'down'])
      try {
        await pause(control, LINK_DOWN_MS)
      } finally {
        await run('ip', ['-n', ctx.cluster.bridgeNs, 'link', 'set', node.port, 'up'])
        ctx.log(`link-down: ${node.name}'s port up at ${control.now().toFixed(1)} s`)
      }
    }
  },
  {
    id: 'loss',
    title: `${LOSS * 100} % loss on every link`,
    fault: `${LOSS * 100} % of packets dropped on arrival at every host, the whole run`,
    link: base => ({ ...base, loss: LOSS })
  }
]
