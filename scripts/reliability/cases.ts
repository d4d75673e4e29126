// The faults `make reliability` survives, each a case: how the cluster's links are made
// and what is done to the running deployment. A case passes when every node ends with
// the verified image, identical to its source tree; the harness (scripts/bench/trial.ts)
// checks every node that reports done against the tree, so data that differs cannot pass.
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { run, sleep, spawnTracked, stopChild, tail } from '../bench/exec.ts'
import type { Cluster } from '../bench/cluster.ts'
import type { LinkSpec } from '../bench/shaping.ts'
import type { TrialControl, TrialResult } from '../bench/trial.ts'
import type { AttackKind } from './attack.ts'

/** How often an injector looks at the deployment's progress. */
const POLL_MS = 250
/** An injector that waits for progress gives up after this long (the trial goes on). */
const PROGRESS_WAIT_MS = 180_000

export interface CaseContext {
  cluster: Cluster
  imageBytes: number
  imageRef: string
  /** the image's payload in the repository */
  payload: string
  repo: string
  serverBin: string
  log: (line: string) => void
  /** a line for the case's row in the table */
  note: (line: string) => void
}

export interface Verdict { passed: boolean; notes: string[] }

export interface ReliabilityCase {
  id: string
  title: string
  /** what is done, for the table */
  fault: string
  /** the links of every host (default: the run's rate, no loss) */
  link?: (base: LinkSpec) => LinkSpec
  during?: (control: TrialControl, ctx: CaseContext) => Promise<void>
  /** what passing means when it is not "every node holds the verified image" */
  judge?: (trial: TrialResult) => Verdict
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

const ATTACK_SCRIPT = fileURLToPath(new URL('./attack.ts', import.meta.url))
/** An attacker that ends on its own before the deployment did: it failed. */
const ATTACK_STOP_GRACE_MS = 5_000

/**
 * Runs an attacker (attack.ts) in the last node's namespace, a compromised node, from the
 * first start until the deployment ends; its summary goes into the table.
 */
function attackCase (kind: AttackKind, title: string, fault: string): ReliabilityCase {
  return {
    id: kind,
    title,
    fault,
    during: async (control, ctx) => {
      const host = ctx.cluster.nodes[ctx.cluster.nodes.length - 1]
      const child = spawnTracked('ip', ['netns', 'exec', host.ns, process.execPath, '--import', 'tsx', ATTACK_SCRIPT,
        '--kind', kind, '--server', control.serverUrl, '--image', ctx.imageRef, '--source', host.address, '--payload', ctx.payload])
      const stderr = tail(child.stderr)
      let summary = ''
      if (child.stdout !== null) createInterface({ input: child.stdout }).on('line', line => { summary = line })
      ctx.log(`${kind}: attacking from ${host.name} (${host.address})`)
      while (!control.finished() && child.exitCode === null) await sleep(POLL_MS)
      if (child.exitCode !== null) ctx.note(`the attacker stopped early (exit ${child.exitCode}): ${stderr().trim().slice(-300)}`)
      await stopChild(child, ATTACK_STOP_GRACE_MS)
      ctx.note(`attacker (${host.name}): ${summary !== '' ? summary : `no summary; ${stderr().trim().slice(-200)}`}`)
    }
  }
}

/** Removed images end their agents at once: how long after the removal each one stopped. */
const REMOVAL_STOP_BOUND_S = 30
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
  },
  attackCase('liar', 'corrupt peer rotating ids and ports', 'a compromised node serves a corrupt copy of every piece, under a new peer id and port each time it is shunned'),
  attackCase('tracker-flood', 'tracker flood from one address', 'a compromised node announces 5 000 peer ids every few seconds'),
  attackCase('silent', 'silent connections holding listener slots', 'a compromised node holds 256 silent connections to the seeder and 100 handshaken silent ones to each of 3 agents, renewed as they close'),
  attackCase('fleet-flood', 'fleet view flood', 'a compromised node posts reports for 2 000 invented nodes, each with its own credential, as fast as it can'),
  removalCase()
]

/** Last: the image is gone from the repository afterwards. */
function removalCase (): ReliabilityCase {
  let removedAt: number | undefined
  return {
    id: 'removal',
    title: 'image removed in use',
    fault: 'si-server image rm --force of the image at 30 % of the deployment (pass: every node either holds the verified image or stops with ERR_IMAGE_REMOVED within 30 s)',
    during: async (control, ctx) => {
      if (!await untilProgress(control, ctx, 0.3)) return
      removedAt = control.now()
      ctx.log(`removal: si-server image rm ${ctx.imageRef} --force at ${removedAt.toFixed(1)} s`)
      await run(ctx.serverBin, ['image', 'rm', ctx.imageRef, '--repo', ctx.repo, '--force'])
    },
    judge: trial => {
      const notes: string[] = []
      const stopped = trial.nodeResults.filter(n => !n.ok)
      const removed = stopped.filter(n => n.error?.startsWith('ERR_IMAGE_REMOVED') === true)
      const late = removed.filter(n => removedAt === undefined || (n.exitedAt ?? Infinity) - removedAt > REMOVAL_STOP_BOUND_S)
      const other = stopped.filter(n => !removed.includes(n))
      const differing = trial.nodeResults.filter(n => n.error?.startsWith('target differs') === true)
      notes.push(`${trial.nodes - stopped.length} held the verified image, ${removed.length} stopped with ERR_IMAGE_REMOVED`)
      if (removed.length > 0 && removedAt !== undefined) notes.push(`they stopped ${Math.min(...removed.map(n => (n.exitedAt ?? 0) - removedAt!)).toFixed(1)}–${Math.max(...removed.map(n => (n.exitedAt ?? 0) - removedAt!)).toFixed(1)} s after the removal`)
      for (const n of other.slice(0, 3)) notes.push(`${n.name}: ${n.error ?? 'failed'}`)
      return { passed: removedAt !== undefined && removed.length > 0 && late.length === 0 && other.length === 0 && differing.length === 0, notes }
    }
  }
}
