// The repository's secrets, in REPO/keys: the signing key, and the secret that node
// credentials and tokens derive from. Each is made on first use with owner-only
// permissions and never replaced: two processes making one at once end with the same
// file (link(2) refuses the second). One readable by group or others is refused, as ssh
// refuses such a key: whoever reads it can sign images or speak for any node.
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { link, mkdir, open, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import { Signer } from '../formats/signature.ts'

export const KEYS_DIR = 'keys'
export const SIGNING_KEY_FILE = 'signing.key'
const MAX_SECRET_FILE_BYTES = 16 * 1024
const OWNER_ONLY = 0o600
const GROUP_OR_OTHERS = 0o077

function keyError (path: string, err: unknown): SiError {
  return new SiError('ERR_KEY', `${path}: ${(err as Error).message}`, { cause: err })
}

async function readSecret (path: string): Promise<Buffer | undefined> {
  let fh
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw keyError(path, err)
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new SiError('ERR_KEY', `${path} is not a regular file`)
    if ((st.mode & GROUP_OR_OTHERS) !== 0) {
      throw new SiError('ERR_KEY', `${path} is accessible to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): run chmod 600 ${path}`)
    }
    if (st.size > MAX_SECRET_FILE_BYTES) throw new SiError('ERR_KEY', `${path} is larger than ${MAX_SECRET_FILE_BYTES} bytes: not a key`)
    return await fh.readFile()
  } finally {
    await fh.close()
  }
}

/** The secret in REPO/keys/FILE, made by `make` when there is none yet. */
export async function repositorySecret (root: string, file: string, make: () => Buffer): Promise<Buffer> {
  const dir = join(root, KEYS_DIR)
  const path = join(dir, file)
  const existing = await readSecret(path)
  if (existing !== undefined) return existing
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const tmp = join(dir, `.${file}.${randomBytes(6).toString('hex')}`)
    await writeFile(tmp, make(), { mode: OWNER_ONLY, flag: 'wx', flush: true })
    try {
      await link(tmp, path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    } finally {
      await rm(tmp, { force: true })
    }
  } catch (err) {
    throw err instanceof SiError ? err : keyError(path, err)
  }
  const made = await readSecret(path)
  if (made === undefined) throw new SiError('ERR_KEY', `${path} vanished just after it was made`)
  return made
}

/** The repository's signing key, made on first use. */
export async function repositorySigner (root: string): Promise<Signer> {
  const pem = await repositorySecret(root, SIGNING_KEY_FILE, () => Buffer.from(Signer.generate().toPem()))
  return Signer.fromPem(pem.toString('utf8'), join(root, KEYS_DIR, SIGNING_KEY_FILE))
}
