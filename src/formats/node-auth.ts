// How a node proves itself to the image server, and how the server answers so that only
// that node can read the answer. The node's secret is a token the administrator gave it
// (si.token: the deployment's, its group's, or its own credential). There is no TLS on a
// provisioning LAN, so the secret itself never travels:
//   request: proof = HMAC-SHA256(secret; "proof", purpose, node, nonce)
//   answer:  AES-256-GCM under HMAC-SHA256(secret; "seal", purpose, node, nonce)
// The nonce is the node's, fresh for each request: a recorded proof opens nothing new,
// and a recorded answer is neither readable nor accepted by another request. Reports
// carry an HMAC of their body under the node's credential, never the credential.
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { SiError } from '../errors.ts'

export const PROOF_HEADER = 'x-si-proof'
export const REPORT_AUTH_HEADER = 'x-si-report-auth'
export type ProofPurpose = 'plan' | 'credential'
const DOMAIN = 'swarmimager node-auth v1'
const NONCE = /^[A-Za-z0-9_-]{16,64}$/
const NONCE_BYTES = 16
const IV_BYTES = 12
const TAG_BYTES = 16
const B64URL = /^[A-Za-z0-9_-]*$/

export function newNonce (): string {
  return randomBytes(NONCE_BYTES).toString('base64url')
}

export function isNonce (text: string): boolean {
  return NONCE.test(text)
}

/** HMAC-SHA256 of the parts, NUL-separated (node names and nonces have no NUL). */
export function hmac (secret: string | Buffer, ...parts: Array<string | Uint8Array>): Buffer {
  const mac = createHmac('sha256', secret)
  mac.update(DOMAIN)
  for (const p of parts) { mac.update('\0'); mac.update(p) }
  return mac.digest()
}

export function proofOf (secret: string, purpose: ProofPurpose, node: string, nonce: string): string {
  return hmac(secret, 'proof', purpose, node, nonce).toString('base64url')
}

/** Compares two base64url MACs in constant time. */
export function sameMac (expected: string, given: string): boolean {
  const a = Buffer.from(expected)
  const b = Buffer.from(given)
  return a.length === b.length && timingSafeEqual(a, b)
}

export interface Sealed { iv: string; data: string; tag: string }

function sealKey (secret: string, purpose: ProofPurpose, node: string, nonce: string): Buffer {
  return hmac(secret, 'seal', purpose, node, nonce)
}

export function seal (secret: string, purpose: ProofPurpose, node: string, nonce: string, plaintext: Uint8Array): Sealed {
  const iv = randomBytes(IV_BYTES)
  const cipher = createCipheriv('aes-256-gcm', sealKey(secret, purpose, node, nonce), iv)
  const data = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return { iv: iv.toString('base64url'), data: data.toString('base64url'), tag: cipher.getAuthTag().toString('base64url') }
}

/** The plaintext, or ERR_UNAUTHORIZED when `sealed` was not sealed with this secret for this request. */
export function unseal (secret: string, purpose: ProofPurpose, node: string, nonce: string, sealed: unknown, what: string): Buffer {
  const s = sealed as Partial<Sealed> | null
  const field = (v: unknown): Buffer | undefined => typeof v === 'string' && B64URL.test(v) ? Buffer.from(v, 'base64url') : undefined
  const iv = field(s?.iv)
  const data = field(s?.data)
  const tag = field(s?.tag)
  if (iv?.length !== IV_BYTES || data === undefined || tag?.length !== TAG_BYTES) throw new SiError('ERR_UNAUTHORIZED', `${what}: the sealed answer is malformed`)
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealKey(secret, purpose, node, nonce), iv)
    decipher.setAuthTag(tag)
    return Buffer.concat([decipher.update(data), decipher.final()])
  } catch {
    throw new SiError('ERR_UNAUTHORIZED', `${what}: the answer cannot be opened with this node's token (not sealed for this request, or altered)`)
  }
}

/** The report header: an HMAC of the body under the node's credential. */
export function reportAuth (credential: string, node: string, body: Uint8Array | string): string {
  return hmac(credential, 'report', node, body).toString('base64url')
}
