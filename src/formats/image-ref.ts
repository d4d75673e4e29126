// Image references, NAME or NAME@VERSION: what plans, agents and the server's URLs name.
import { SiError } from '../errors.ts'

const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const IMAGE_REF = /^([^@]*)(?:@(.*))?$/
const VERSION = /^[1-9][0-9]{0,15}$/

export interface ImageRef { name: string; version?: number }

export function parseImageRef (ref: string): ImageRef {
  const [, name, version] = IMAGE_REF.exec(ref) ?? []
  if (name === undefined || !IMAGE_NAME.test(name)) {
    throw new SiError('ERR_INVALID_IMAGE_NAME', `invalid image name in "${ref}": use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit`)
  }
  if (version === undefined) return { name }
  if (!VERSION.test(version) || !Number.isSafeInteger(Number(version))) {
    throw new SiError('ERR_INVALID_IMAGE_NAME', `invalid version in "${ref}": expected NAME@N with N a positive integer`)
  }
  return { name, version: Number(version) }
}

export function formatImageRef (name: string, version?: number): string {
  return version === undefined ? name : `${name}@${version}`
}

/** A version directory's name is its number: the same rule as a reference's version. */
export function isVersionName (text: string): boolean {
  return VERSION.test(text)
}

export function isImageName (text: string): boolean {
  return IMAGE_NAME.test(text)
}
