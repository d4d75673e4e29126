// The agent's side of signed content: which key it trusts, and whether a torrent is one
// that key vouched for. Given a key, the agent uses nothing else: a torrent without the
// server's signed statement, signed by another key, or whose statement names another
// info hash, another image or another request, fails with ERR_UNTRUSTED before anything
// is written. Without a key it says once that nothing is authenticated.
import { readFile } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { parseImageRef } from '../formats/image-ref.ts'
import { parseStatement, TORRENT_SIGNATURE_KEY, TORRENT_STATEMENT_KEY, type Collection, type ImageStatement } from '../formats/image-statement.ts'
import { checkSignature, isPublicKeyText } from '../formats/signature.ts'
import { decodeBencode, isBencodeDict } from '../torrent/bencode.ts'
import type { Metainfo } from '../torrent/metainfo.ts'
import { BAKED_TRUSTED_KEY_FILE } from './config.ts'

export const UNAUTHENTICATED_WARNING = 'no trusted key (--trusted-key, si.trusted_key=, or make initrd TRUSTED_KEY=): ' +
  'what this agent installs is not authenticated; anyone on the network could have served it'

/** The key `make initrd TRUSTED_KEY=` put in the initramfs, if any. */
export async function readBakedKey (path = BAKED_TRUSTED_KEY_FILE): Promise<string | undefined> {
  let text: string
  try { text = (await readFile(path, 'utf8')).trim() } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new SiError('ERR_CONFIG', `cannot read the baked trusted key ${path}: ${(err as Error).message}`, { cause: err })
  }
  if (!isPublicKeyText(text)) throw new SiError('ERR_CONFIG', `${path} holds no valid public key (ed25519:...): rebuild the initramfs with make initrd TRUSTED_KEY=$(si-server key show)`)
  return text
}

/**
 * The key in force. A baked key is the initramfs's own and is not overridden: a kernel
 * command line or flag naming another key is a mistake or an attack, and stops the agent.
 */
export function effectiveTrustedKey (given: string | undefined, origin: string | undefined, baked: string | undefined): string | undefined {
  if (baked !== undefined && given !== undefined && given !== baked) {
    throw new SiError('ERR_CONFIG', `${origin ?? 'the configuration'} names trusted key ${given}, but the initramfs has ${baked} baked in (${BAKED_TRUSTED_KEY_FILE}); remove the other key or rebuild the initramfs`)
  }
  return baked ?? given
}

/** What the agent expects the statement to say, beyond the torrent's own identity. */
export interface ExpectedImage {
  /** the reference the agent asked the server for */
  requested?: string
  /** the nonce it sent with that request */
  nonce?: string
  /** the repository collection (default images): an override is not an image */
  collection?: Collection
}

function statementFields (meta: Metainfo, from: string): { statement: Buffer; signature: string | undefined } {
  const top = decodeBencode(meta.raw)
  if (!isBencodeDict(top)) throw new SiError('ERR_UNTRUSTED', `torrent from ${from} is not a dictionary`)
  const statement = top[TORRENT_STATEMENT_KEY]
  const signature = top[TORRENT_SIGNATURE_KEY]
  if (!(statement instanceof Uint8Array)) throw new SiError('ERR_UNTRUSTED', `torrent from ${from} carries no signed statement: it was not served by a swarmimager server that signs`)
  return { statement: Buffer.from(statement), signature: signature instanceof Uint8Array ? Buffer.from(signature).toString('utf8') : undefined }
}

/** The statement, once it is the trusted key's and matches this torrent and this request. */
export function checkTorrent (meta: Metainfo, trustedKey: string, expected: ExpectedImage, from: string): ImageStatement {
  const { statement: bytes, signature } = statementFields(meta, from)
  checkSignature(trustedKey, 'image', bytes, signature, `torrent from ${from}`)
  const s = parseStatement(bytes)
  const mismatch = (what: string, signed: unknown, actual: unknown): never => {
    throw new SiError('ERR_UNTRUSTED', `torrent from ${from}: the signed statement names ${what} ${JSON.stringify(signed)}, ${actual === undefined ? 'but none was expected' : `not ${JSON.stringify(actual)}`}`)
  }
  if (s.infoHash !== meta.infoHashHex) mismatch('info hash', s.infoHash, meta.infoHashHex)
  if (s.length !== meta.length) mismatch('length', s.length, meta.length)
  if (s.pieceLength !== meta.pieceLength) mismatch('piece length', s.pieceLength, meta.pieceLength)
  if (s.collection !== (expected.collection ?? 'images')) mismatch('collection', s.collection, expected.collection ?? 'images')
  if (expected.requested !== undefined) {
    const ref = parseImageRef(expected.requested)
    if (s.requested !== expected.requested) mismatch('request', s.requested, expected.requested)
    if (s.name !== ref.name) mismatch('image', s.name, ref.name)
    if (ref.version !== undefined && s.version !== ref.version) mismatch('version', s.version, ref.version)
  }
  if (expected.nonce !== undefined && s.nonce !== expected.nonce) mismatch('nonce', s.nonce, expected.nonce)
  return s
}
