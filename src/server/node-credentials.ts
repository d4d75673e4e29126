// Who may speak for a node, without a database: every token and credential is an HMAC
// of what it names under one server secret kept in the repository (REPO/keys/node.secret).
// They survive a restart, a node that reinstalls gets the same credential again, and
// deleting the secret file revokes them all at once (a new one is made on next start).
//
//   deployment token  every node of this repository
//   group token       the nodes groups.conf puts in that group
//   node credential   one node: signs its reports; also accepted as its token
//
// A node proves it holds one of these with an HMAC over a fresh nonce (formats/
// node-auth.ts); the server answers sealed under the secret that matched.
import { randomBytes } from 'node:crypto'
import { SiError } from '../errors.ts'
import { hmac, proofOf, reportAuth, sameMac, type ProofPurpose } from '../formats/node-auth.ts'
import { repositorySecret } from '../image/keys.ts'

export const NODE_SECRET_FILE = 'node.secret'
const SECRET_BYTES = 32

/** What a request showed: nothing, a proof that matched (and with which secret), or a false one. */
export type Proven = { kind: 'none' } | { kind: 'proven'; secret: string } | { kind: 'refused'; reason: string }

export class NodeCredentials {
  private constructor (private readonly secret: Buffer) {}

  static async open (repoRoot: string): Promise<NodeCredentials> {
    const text = (await repositorySecret(repoRoot, NODE_SECRET_FILE, () => Buffer.from(randomBytes(SECRET_BYTES).toString('hex') + '\n'))).toString('utf8').trim()
    if (!/^[0-9a-f]{64}$/.test(text)) throw new SiError('ERR_KEY', `${repoRoot}/keys/${NODE_SECRET_FILE}: expected ${SECRET_BYTES} bytes in hexadecimal`)
    return new NodeCredentials(Buffer.from(text, 'hex'))
  }

  private derive (...parts: string[]): string {
    return hmac(this.secret, ...parts).toString('base64url')
  }

  credential (node: string): string { return this.derive('credential', node) }
  deploymentToken (): string { return this.derive('token', 'deployment') }
  groupToken (group: string): string { return this.derive('token', 'group', group) }

  /** Checks a request's proof against every secret that may speak for `node` (in `group`). */
  check (purpose: ProofPurpose, node: string, group: string | undefined, nonce: string | undefined, proof: string | undefined): Proven {
    if (proof === undefined) return { kind: 'none' }
    if (nonce === undefined) return { kind: 'refused', reason: 'a proof needs the nonce it was made over' }
    const secrets = [this.credential(node), this.deploymentToken(), ...(group !== undefined ? [this.groupToken(group)] : [])]
    const secret = secrets.find(s => sameMac(proofOf(s, purpose, node, nonce), proof))
    if (secret === undefined) return { kind: 'refused', reason: `the proof matches no token that may speak for node ${node} (its credential, the deployment's token${group !== undefined ? ` or group ${group}'s token` : ''})` }
    return { kind: 'proven', secret }
  }

  /** Whether a report's body was signed with `node`'s credential. */
  reportIsAuthentic (node: string, body: Uint8Array, given: string | undefined): boolean {
    return given !== undefined && sameMac(reportAuth(this.credential(node), node, body), given)
  }
}
