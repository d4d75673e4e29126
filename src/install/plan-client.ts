// Asks the image server for this node's plan, naming the node by host name and by
// every MAC address it has, so the server can match either (or a group, or its default).
// With a token the request carries the node's proof and the plan comes sealed for it;
// with a trusted key the plan must be signed by it and be the answer to this request.
import { networkInterfaces } from 'node:os'
import { SiError, isSiError } from '../errors.ts'
import { httpGetRetrying } from '../deploy/http-get.ts'
import { nodeRequest, openAnswer, type NodeIdentity } from '../deploy/credential-client.ts'
import { checkSignature, SIGNATURE_HEADER } from '../formats/signature.ts'
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

export interface PlanFetchOptions {
  signal?: AbortSignal
  attempts?: number
  retryMs?: number
  /** accept only a plan this key signed */
  trustedKey?: string
}

export async function fetchPlan (server: string, id: NodeIdentity, opts: PlanFetchOptions = {}): Promise<FetchedPlan> {
  const { node, macs } = id
  const req = nodeRequest(planUrl(server, node, []), 'plan', id)
  let doc
  try {
    doc = await httpGetRetrying(req.url, { signal: opts.signal, attempts: opts.attempts, retryMs: opts.retryMs, headers: req.headers, hint: 'check si.server and that si-server runs and is reachable from this network' })
  } catch (err) {
    if (isSiError(err, 'ERR_IMAGE_NOT_FOUND')) throw new SiError('ERR_PLAN_NOT_FOUND', `the server has no plan for node ${node} (MAC ${macs.join(', ') || 'none'}) and no default plan: ${err.message}`)
    throw err
  }
  const what = `plan for ${node} from ${server}`
  if (opts.trustedKey !== undefined) {
    const signature = doc.headers[SIGNATURE_HEADER]
    checkSignature(opts.trustedKey, 'plan', doc.body, typeof signature === 'string' ? signature : undefined, what)
  }
  const answer = openAnswer(doc.body, 'plan', id, req.nonce, what)
  if (JSON.stringify(answer.macs) !== JSON.stringify(macs.map(m => m.toLowerCase().replace(/-/g, ':')))) throw new SiError('ERR_UNTRUSTED', `${what}: the answer is for MAC ${JSON.stringify(answer.macs)}, not ${JSON.stringify(macs)}`)
  const source = typeof answer.source === 'string' ? answer.source : 'server'
  return { plan: validatePlan(answer.plan, `plan ${source} from ${server}`), source }
}
