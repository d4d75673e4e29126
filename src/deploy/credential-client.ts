// The node's report credential, asked for when the agent starts, before its first report,
// so that even a failure to get a plan is reported as this node's. The server gives it
// to whoever may read the node's plan: with a token, the request carries a proof and the
// answer comes sealed for this node (formats/node-auth.ts); without one, only a server
// that does not require tokens answers, in the clear.
import { SiError } from '../errors.ts'
import { newNonce, proofOf, PROOF_HEADER, unseal, type ProofPurpose } from '../formats/node-auth.ts'
import { httpGetRetrying, type RetryOptions } from './http-get.ts'

export interface NodeIdentity {
  node: string
  macs: string[]
  /** si.token: the deployment's, the node's group's, or its own credential */
  token?: string
}

/** A request that names the node, with a fresh nonce and the node's proof when it has a token. */
export function nodeRequest (url: string, purpose: ProofPurpose, id: NodeIdentity): { url: string; nonce: string; headers: Record<string, string> } {
  const nonce = newNonce()
  const u = new URL(url)
  for (const m of id.macs) u.searchParams.append('mac', m)
  u.searchParams.set('nonce', nonce)
  return { url: u.toString(), nonce, headers: id.token !== undefined ? { [PROOF_HEADER]: proofOf(id.token, purpose, id.node, nonce) } : {} }
}

function parseJson (body: Buffer, what: string): Record<string, unknown> {
  let doc: unknown
  try { doc = JSON.parse(body.toString('utf8')) } catch { doc = undefined }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new SiError('ERR_HTTP_STATUS', `${what}: the answer is not a JSON object`)
  return doc as Record<string, unknown>
}

/**
 * The answer's payload: opened with the token when it came sealed (which a proof always
 * gets), and checked to be about this node and this request.
 */
export function openAnswer (body: Buffer, purpose: ProofPurpose, id: NodeIdentity, nonce: string, what: string): Record<string, unknown> {
  let doc = parseJson(body, what)
  if (doc.sealed !== undefined) {
    if (id.token === undefined) throw new SiError('ERR_UNAUTHORIZED', `${what}: the answer is sealed for a node with a token, and this one has none (si.token)`)
    doc = parseJson(unseal(id.token, purpose, id.node, nonce, doc.sealed, what), what)
  } else if (id.token !== undefined) {
    throw new SiError('ERR_UNAUTHORIZED', `${what}: the server answered in the clear a request that proved itself: not the server that issued this node's token`)
  }
  if (doc.node !== id.node) throw new SiError('ERR_UNTRUSTED', `${what}: the answer is for node ${JSON.stringify(doc.node)}, not ${id.node}`)
  if (doc.nonce !== nonce) throw new SiError('ERR_UNTRUSTED', `${what}: the answer is not for this request (its nonce differs): replayed?`)
  return doc
}

export async function requestCredential (server: string, id: NodeIdentity, opts: Pick<RetryOptions, 'signal' | 'attempts' | 'retryMs'> = {}): Promise<string> {
  const what = `credential of node ${id.node} from ${server}`
  const req = nodeRequest(`${server.replace(/\/+$/, '')}/api/nodes/${encodeURIComponent(id.node)}/credential`, 'credential', id)
  const doc = await httpGetRetrying(req.url, { ...opts, headers: req.headers, hint: 'check the server address and that si-server runs' })
  const credential = openAnswer(doc.body, 'credential', id, req.nonce, what).credential
  if (typeof credential !== 'string' || credential === '') throw new SiError('ERR_HTTP_STATUS', `${what}: the answer holds no credential`)
  return credential
}

/**
 * The credential for a reporter: never rejects. When it cannot be had, `warn` says so
 * once (the reports that follow will be refused by the server, the console still shows all).
 */
export async function credentialForReports (server: string, id: NodeIdentity, warn: (message: string) => void, opts: Pick<RetryOptions, 'signal' | 'attempts' | 'retryMs'> = {}): Promise<string | undefined> {
  try {
    return await requestCredential(server, id, opts)
  } catch (err) {
    warn(`no report credential, so the server will refuse this node's reports: ${(err as Error).message}`)
    return undefined
  }
}
