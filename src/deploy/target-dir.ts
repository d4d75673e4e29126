// The target directory of a download: created when missing, refused when it is not a directory.
import { mkdir, stat } from 'node:fs/promises'
import { SiError, describeError } from '../errors.ts'

export async function ensureTargetDir (target: string): Promise<void> {
  try {
    await mkdir(target, { recursive: true })
    if (!(await stat(target)).isDirectory()) throw new Error('not a directory')
  } catch (err) {
    throw new SiError('ERR_INVALID_ARGUMENT', `target ${target} is not a usable directory: ${describeError(err)}`, { cause: err })
  }
}
