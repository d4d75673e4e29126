// Where tar headers meet file attributes. tar-stream writes uid, gid and device numbers
// as 6 octal digits and mtime as 11, silently clamping anything larger, and on extract it
// leaves pax overrides of those fields in header.pax. Both directions go through here so
// the packer and the extractor agree on which pax keys carry what.
import type { Header } from 'tar-stream'
import { SiError } from '../errors.ts'

/** Largest value a 6-digit octal ustar field (uid, gid, devmajor, devminor) holds. */
export const USTAR_MAX_ID = 0o777777
/** Largest mtime (seconds) the 11-digit octal ustar field holds. */
export const USTAR_MAX_MTIME = 0o77777777777

export const PAX_UID = 'uid'
export const PAX_GID = 'gid'
export const PAX_MTIME = 'mtime'
export const PAX_ATIME = 'atime'
// GNU tar and star use these for device numbers that do not fit ustar.
export const PAX_DEVMAJOR = 'SCHILY.devmajor'
export const PAX_DEVMINOR = 'SCHILY.devminor'

/** tar-stream's header with its pax records typed (they are strings, key by key). */
export type TarHeader = Partial<Omit<Header, 'pax'>> & Pick<Header, 'name'> & { pax?: Record<string, string> | null }

export interface NumericAttrs {
  uid: number
  gid: number
  /** Seconds since the epoch; whole seconds for now, fractions are carried if present. */
  mtime: number
  devmajor?: number
  devminor?: number
}

/** pax records needed so that no attribute is clamped, or undefined if ustar suffices. */
export function paxRecordsFor (a: NumericAttrs): Record<string, string> | undefined {
  const pax: Record<string, string> = {}
  if (a.uid > USTAR_MAX_ID) pax[PAX_UID] = String(a.uid)
  if (a.gid > USTAR_MAX_ID) pax[PAX_GID] = String(a.gid)
  if (a.mtime < 0 || a.mtime > USTAR_MAX_MTIME || !Number.isInteger(a.mtime)) pax[PAX_MTIME] = String(a.mtime)
  if ((a.devmajor ?? 0) > USTAR_MAX_ID) pax[PAX_DEVMAJOR] = String(a.devmajor)
  if ((a.devminor ?? 0) > USTAR_MAX_ID) pax[PAX_DEVMINOR] = String(a.devminor)
  return Object.keys(pax).length > 0 ? pax : undefined
}

const UNSIGNED = /^[0-9]{1,16}$/
const SECONDS = /^-?[0-9]{1,16}(\.[0-9]{1,9})?$/

function paxNumber (header: TarHeader, key: string, pattern: RegExp): number | undefined {
  const v = header.pax?.[key]
  if (v === undefined) return undefined
  if (!pattern.test(v)) throw new SiError('ERR_ARCHIVE', `entry ${header.name}: invalid pax ${key} "${v}"`)
  return Number(v)
}

export interface EntryAttrs extends NumericAttrs {
  mode: number
  atime: number
}

/** The attributes an extracted entry should get, pax overrides applied. */
export function entryAttrs (header: TarHeader): EntryAttrs {
  const mtime = paxNumber(header, PAX_MTIME, SECONDS) ?? Math.floor((header.mtime?.getTime() ?? 0) / 1000)
  return {
    mode: (header.mode ?? 0) & 0o7777,
    uid: paxNumber(header, PAX_UID, UNSIGNED) ?? header.uid ?? 0,
    gid: paxNumber(header, PAX_GID, UNSIGNED) ?? header.gid ?? 0,
    mtime,
    atime: paxNumber(header, PAX_ATIME, SECONDS) ?? mtime,
    devmajor: paxNumber(header, PAX_DEVMAJOR, UNSIGNED) ?? header.devmajor ?? 0,
    devminor: paxNumber(header, PAX_DEVMINOR, UNSIGNED) ?? header.devminor ?? 0
  }
}

/** Linux's dev_t layout (glibc gnu_dev_major/minor). */
export function splitRdev (rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n)
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n)
  return { major: Number(major), minor: Number(minor) }
}
