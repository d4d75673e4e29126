// What the server tells one node about itself: its plan (GET /api/plan) and its report
// credential (GET /api/nodes/NODE/credential). Both follow one rule: whoever may read a
// node's plan may speak for it. A request that proves itself (node-credentials.ts) is
// answered sealed for that node; one that shows no proof is answered in the clear
// unless the server requires tokens, or the plan carries secrets; a false proof is
// refused. Plans are signed with the repository key over the exact bytes sent.
import { SiError } from '../errors.ts'
import { isNonce, seal, type ProofPurpose } from '../formats/node-auth.ts'
import { isNodeName } from '../formats/node-name.ts'
import { planToJson } from '../formats/plan.ts'
import type { SignedPurpose } from '../formats/signature.ts'
import type { NodeCredentials } from './node-credentials.ts'
import type { ImageRepository } from '../image/repository.ts'
import { DEFAULT_PLAN, MAC, withOverrides, type PlanStore } from './plans.ts'

export const MAX_MACS = 32

export interface NodeApiOptions {
  plans?: PlanStore
  /** the overrides a plan's are resolved in (absent: the plan's list is sent as written) */
  overrides?: ImageRepository
  credentials: NodeCredentials
  /** serve plans and credentials only to requests that prove themselves */
  requireToken: boolean
}

/** What to send: the HTTP layer serializes the body once and signs it for `signed`. */
export interface Answer { status: number; body: Record<string, unknown>; signed?: SignedPurpose }

interface NodeRequest { node: string; macs: string[]; nonce?: string; proof?: string }

function refuse (status: number, error: string, code?: string): Answer {
  return { status, body: code === undefined ? { error } : { error, code } }
}

function parseRequest (node: string, query: URLSearchParams, proof: string | undefined): NodeRequest | Answer {
  if (!isNodeName(node)) return refuse(400, `invalid or missing node name ${JSON.stringify(node)}`)
  const macs = query.getAll('mac').map(m => m.toLowerCase().replace(/-/g, ':'))
  if (macs.length > MAX_MACS) return refuse(400, `at most ${MAX_MACS} MAC addresses`)
  const bad = macs.find(m => !MAC.test(m))
  if (bad !== undefined) return refuse(400, `invalid MAC address ${JSON.stringify(bad)}`)
  const nonce = query.get('nonce') ?? undefined
  if (nonce !== undefined && !isNonce(nonce)) return refuse(400, 'invalid nonce (16 to 64 base64url characters)')
  return { node, macs, nonce, proof }
}

function isAnswer (v: object): v is Answer { return 'status' in v }

/** The secret the request proved it holds, undefined when it showed none, or the refusal. */
async function authorize (api: NodeApiOptions, purpose: ProofPurpose, req: NodeRequest): Promise<{ secret?: string } | Answer> {
  const group = await api.plans?.groupOf(req.node, req.macs)
  const proven = api.credentials.check(purpose, req.node, group, req.nonce, req.proof)
  if (proven.kind === 'refused') return refuse(401, `not authorized: ${proven.reason}`, 'ERR_UNAUTHORIZED')
  if (proven.kind === 'none' && api.requireToken) {
    return refuse(401, `this server gives a node its ${purpose} only when the node proves itself: give it si.token= (si-server token show)`, 'ERR_UNAUTHORIZED')
  }
  return proven.kind === 'proven' ? { secret: proven.secret } : {}
}

/** The payload, sealed for the node when it proved itself (then a nonce is always there). */
function sealedFor (purpose: ProofPurpose, req: NodeRequest, secret: string | undefined, payload: Record<string, unknown>): Record<string, unknown> {
  if (secret === undefined || req.nonce === undefined) return payload
  return { node: req.node, nonce: req.nonce, sealed: seal(secret, purpose, req.node, req.nonce, Buffer.from(JSON.stringify(payload))) }
}

function serverError (err: unknown): Answer {
  if (err instanceof SiError) return refuse(500, `${err.code}: ${err.message}`, err.code)
  throw err
}

/** GET /api/plan?node=NAME&mac=MAC...&nonce=N, with the node's proof if it has one. */
export async function answerPlan (api: NodeApiOptions, query: URLSearchParams, proof: string | undefined): Promise<Answer> {
  const req = parseRequest(query.get('node') ?? '', query, proof)
  if (isAnswer(req)) return req
  const store = api.plans
  if (store === undefined) return refuse(404, 'this server serves no plans')
  try {
    const access = await authorize(api, 'plan', req)
    if (isAnswer(access)) return access
    const selected = await store.select(req.node, req.macs)
    if (selected === undefined) return refuse(404, `no plan for node ${req.node} (MAC ${req.macs.join(', ') || 'none'}) in ${store.dir}: add hosts/${req.node}.json, a macs/ or group plan, or ${DEFAULT_PLAN}`)
    if (Object.keys(selected.plan.secrets).length > 0 && access.secret === undefined) {
      return refuse(403, `plan ${selected.source} carries secrets: it is served only to a node that proves itself (si.token)`, 'ERR_UNAUTHORIZED')
    }
    const plan = api.overrides === undefined ? selected.plan : await withOverrides(store, api.overrides, selected, req.node, req.macs)
    const payload = { node: req.node, macs: req.macs, nonce: req.nonce, source: selected.source, plan: planToJson(plan) }
    return { status: 200, body: sealedFor('plan', req, access.secret, payload), signed: 'plan' }
  } catch (err) {
    return serverError(err)
  }
}

/** GET /api/nodes/NODE/credential?nonce=N&mac=MAC...: the key the node signs its reports with. */
export async function answerCredential (api: NodeApiOptions, node: string, query: URLSearchParams, proof: string | undefined): Promise<Answer> {
  const req = parseRequest(node, query, proof)
  if (isAnswer(req)) return req
  try {
    const access = await authorize(api, 'credential', req)
    if (isAnswer(access)) return access
    return { status: 200, body: sealedFor('credential', req, access.secret, { node: req.node, nonce: req.nonce, credential: api.credentials.credential(req.node) }) }
  } catch (err) {
    return serverError(err)
  }
}
