// Asks the image server for this node's plan, naming the node by host name and by
// every MAC address it has, so the server can match either (or a group, or its default).
import { networkInterfaces } from 'node:os'
import { SiError, isSiError } from '../errors.ts'
import { httpGetRetrying } from '../deploy/http-get.ts'
import { validatePlan, type Plan } from '../formats/plan.ts'

const NO_MAC = '00:00:00:00:00:00'

export function localMacs (): string[] {
  const macs = new Set<string>()
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (!a.internal && a.mac !== NO_MAC) macs.add(a.mac.toLowerCase())
  }
  return [...macs].sort()
}

export function planUrl (server: string, node: string, macs: string[]): string {
  const q = new URLSearchParams({ node })
  for (const m of macs) q.append('mac', m)
  return `${server}/api/plan?${q.toString()}`
}

export interface FetchedPlan { plan: Plan; source: string }

export async function fetchPlan (server: string, node: string, macs: string[], opts: { signal?: AbortSignal; attempts?: number; retryMs?: number } = {}): Promise<FetchedPlan> {
  const url = planUrl(server, node, macs)
  let body: Buffer
  try {
    body = await httpGetRetrying(url, { ...opts, hint: 'check si.server and that si-server runs and is reachable from this network' })
  } catch (err) {
    if (isSiError(err, 'ERR_IMAGE_NOT_FOUND')) throw new SiError('ERR_PLAN_NOT_FOUND', `the server has no plan for node ${node} (MAC ${macs.join(', ') || 'none'}) and no default plan: ${err.message}`)
    throw err
  }
  let doc: { plan?: unknown; source?: unknown }
  try { doc = JSON.parse(body.toString('utf8')) } catch {
    throw new SiError('ERR_PLAN', `${url} did not answer JSON`)
  }
  const source = typeof doc.source === 'string' ? doc.source : 'server'
  return { plan: validatePlan(doc.plan, `plan ${source} from ${server}`), source }
}

