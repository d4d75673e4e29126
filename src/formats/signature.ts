// Signatures over what the image server serves: Ed25519 (node:crypto) with the
// repository's one key. A signature covers the exact bytes sent and what they are for
// (their purpose), so a signed plan can never pass for a signed image statement. The
// public key is one line, "ed25519:" and its 32 bytes in base64url, which a kernel
// command line, a shell and a JSON file all carry as they are; a signature names the key
// that made it, so a verifier can tell "signed by another key" from "altered".
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { SiError } from '../errors.ts'

export const PUBLIC_KEY_PREFIX = 'ed25519:'
export const PUBLIC_KEY_RULE = 'ed25519: and 43 base64url characters, as si-server key show prints it'
const PUBLIC_KEY_TEXT = /^ed25519:[A-Za-z0-9_-]{43}$/
const SIGNATURE_BYTES = /^[A-Za-z0-9_-]{86}$/
/** The HTTP header that carries the signature of a response body. */
export const SIGNATURE_HEADER = 'x-si-signature'
/** Put before every signed body: nothing else this key could sign starts the same way. */
const DOMAIN = 'swarmimager signed v1'

/** What a signature vouches for; part of the signed bytes. */
export type SignedPurpose = 'image' | 'plan' | 'boot-menu' | 'image-list'

export function isPublicKeyText (text: string): boolean {
  return PUBLIC_KEY_TEXT.test(text)
}

function publicKeyText (key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' })
  return `${PUBLIC_KEY_PREFIX}${String(jwk.x)}`
}

function publicKeyOf (text: string): KeyObject {
  if (!isPublicKeyText(text)) throw new SiError('ERR_INVALID_ARGUMENT', `invalid public key ${JSON.stringify(text)}: expected ${PUBLIC_KEY_RULE}`)
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: text.slice(PUBLIC_KEY_PREFIX.length) }, format: 'jwk' })
}

function signedBytes (purpose: SignedPurpose, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`${DOMAIN}\n${purpose}\n`), body])
}

/** The repository key: signs; its public half is what agents are told to trust. */
export class Signer {
  readonly publicKey: string
  private readonly privateKey: KeyObject

  private constructor (privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new SiError('ERR_KEY', `expected an Ed25519 private key, found ${privateKey.asymmetricKeyType ?? 'another kind of key'}`)
    this.privateKey = privateKey
    this.publicKey = publicKeyText(createPublicKey(privateKey))
  }

  static generate (): Signer {
    return new Signer(generateKeyPairSync('ed25519').privateKey)
  }

  /** From PKCS#8 PEM, as toPem() writes it; `where` names the file in errors. */
  static fromPem (pem: string, where: string): Signer {
    let key: KeyObject
    try { key = createPrivateKey(pem) } catch (err) {
      throw new SiError('ERR_KEY', `${where}: not a private key in PEM: ${(err as Error).message}`, { cause: err })
    }
    return new Signer(key)
  }

  toPem (): string {
    return this.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  }

  /** "KEY SIGNATURE": the public key, a space, the signature in base64url. */
  sign (purpose: SignedPurpose, body: Uint8Array): string {
    return `${this.publicKey} ${sign(null, signedBytes(purpose, body), this.privateKey).toString('base64url')}`
  }
}

/**
 * Throws ERR_UNTRUSTED unless `signature` is the trusted key's over `body` for `purpose`.
 * `what` names the document in the message ("torrent from http://...").
 */
export function checkSignature (trustedKey: string, purpose: SignedPurpose, body: Uint8Array, signature: string | undefined, what: string): void {
  const trusted = publicKeyOf(trustedKey)
  if (signature === undefined || signature === '') throw new SiError('ERR_UNTRUSTED', `${what} is not signed; the trusted key is ${trustedKey}`)
  const [key, sig, extra] = signature.trim().split(' ')
  if (extra !== undefined || !isPublicKeyText(key) || sig === undefined || !SIGNATURE_BYTES.test(sig)) {
    throw new SiError('ERR_UNTRUSTED', `${what} has a malformed signature (expected "${PUBLIC_KEY_PREFIX}KEY SIGNATURE")`)
  }
  if (key !== trustedKey) throw new SiError('ERR_UNTRUSTED', `${what} is signed by ${key}, not by the trusted key ${trustedKey}`)
  if (!verify(null, signedBytes(purpose, body), trusted, Buffer.from(sig, 'base64url'))) {
    throw new SiError('ERR_UNTRUSTED', `${what}: the signature does not match the content (altered after signing, or signed as something else than ${purpose})`)
  }
}
