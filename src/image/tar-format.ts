// The tar format as GNU tar's `--format=posix` writes it, down to the bytes: ustar headers
// plus pax extended records whose values are raw bytes (paths that are not UTF-8, binary
// xattr values), GNU sparse 1.0 for files with holes, nanosecond times. tar-stream cannot
// carry these (its pax values are UTF-8 strings), so both directions use this module.
import { SiError } from '../errors.ts'

export const BLOCK = 512
/** ustar numeric fields: uid/gid/mode/devs are 8 bytes (7 octal digits), size/mtime 12 (11). */
export const USTAR_MAX_ID = 0o7777777
export const USTAR_MAX_SIZE = 0o77777777777
export const USTAR_MAX_MTIME = 0o77777777777
const NAME_FIELD = 100
const PREFIX_FIELD = 155
const OWNER_NAME_FIELD = 32
const NS_PER_S = 1_000_000_000n
const DOT_SLASH = Buffer.from('./')
const PAX_HEADER_DIR = Buffer.from('./PaxHeaders/')

export const PAX_XATTR_PREFIX = 'SCHILY.xattr.'
/** libarchive's alternative: base64 value, URL-encoded name; read for compatibility only. */
export const PAX_LIBARCHIVE_XATTR_PREFIX = 'LIBARCHIVE.xattr.'
export const PAX_ACL_ACCESS = 'SCHILY.acl.access'
export const PAX_ACL_DEFAULT = 'SCHILY.acl.default'
export const PAX_DEVMAJOR = 'SCHILY.devmajor'
export const PAX_DEVMINOR = 'SCHILY.devminor'
export const SPARSE_NAME_DIR = 'GNUSparseFile.0'

export type EntryType = 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device' | 'block-device'

const TYPE_FLAGS: Record<EntryType, number> = {
  file: 0x30, link: 0x31, symlink: 0x32, 'character-device': 0x33, 'block-device': 0x34, directory: 0x35, fifo: 0x36
}

/** One archive member, every attribute in the form the file system has it. */
export interface TarEntry {
  /** Raw bytes, relative, without a leading "./"; directories without the trailing "/". "" is the root. */
  path: Buffer
  type: EntryType
  /** The 12 permission bits, setuid/setgid/sticky included. */
  mode: number
  uid: number
  gid: number
  /** Owner names: hints only, numeric ids decide. */
  uname?: string
  gname?: string
  mtimeNs: bigint
  /** Absent means "same as mtime" (the writer leaves it out then). */
  atimeNs?: bigint
  /** Logical size of a regular file (the real size for a sparse one). */
  size: number
  /** Symlink target (verbatim) or hard link target (an archive path). */
  linkpath?: Buffer
  devmajor?: number
  devminor?: number
  /** Extended attributes other than ACLs: name (latin1 string, byte for byte) to raw value. */
  xattrs?: Map<string, Buffer>
  /** POSIX ACLs in GNU tar's text form with numeric ids, one entry per line. */
  aclAccess?: string
  aclDefault?: string
  /** Data segments [offset, length] of a sparse file, in order; absent for a dense file. */
  sparse?: Array<[number, number]>
}

// ---- times ----------------------------------------------------------------------------

export function formatPaxTime (ns: bigint): string {
  const neg = ns < 0n
  const abs = neg ? -ns : ns
  let frac = Number(abs % NS_PER_S)
  let fracText = ''
  if (frac !== 0) {
    // Nine digits, trailing zeros dropped (every entry has two of these: no regex).
    let digits = 9
    while (frac % 10 === 0) { frac /= 10; digits-- }
    fracText = '.' + String(frac).padStart(digits, '0')
  }
  return `${neg ? '-' : ''}${abs / NS_PER_S}${fracText}`
}

const PAX_TIME = /^(-?)([0-9]{1,19})(?:\.([0-9]+))?$/

export function parsePaxTime (text: string, what: string): bigint {
  const m = PAX_TIME.exec(text)
  if (m === null) throw new SiError('ERR_ARCHIVE', `${what}: invalid time "${text}"`)
  // Digits past nanoseconds are dropped, as GNU tar does.
  const ns = BigInt(m[2]) * NS_PER_S + BigInt((m[3] ?? '').slice(0, 9).padEnd(9, '0'))
  return m[1] === '-' ? -ns : ns
}

function floorSeconds (ns: bigint): bigint {
  const s = ns / NS_PER_S
  return ns < 0n && ns % NS_PER_S !== 0n ? s - 1n : s
}

// ---- pax records ----------------------------------------------------------------------

export type PaxRecords = Map<string, Buffer>

/** A record's length, its own digits included. */
function paxRecordLength (key: Buffer, value: Buffer): number {
  const body = 3 + key.length + value.length // " " + key + "=" + value + "\n" minus the length digits
  const len = body + String(body).length
  return String(len).length !== String(body).length ? body + String(len).length : len
}

/** Writes "LEN KEY=VALUE\n" records into `out` at `offset`; returns the offset after them. */
function writePaxRecords (records: Array<[Buffer, Buffer]>, out: Buffer, offset: number): number {
  let at = offset
  for (const [key, value] of records) {
    at += out.write(`${paxRecordLength(key, value)} `, at, 'latin1')
    at += key.copy(out, at)
    out[at++] = 0x3d // =
    at += value.copy(out, at)
    out[at++] = 0x0a
  }
  return at
}

function paxBytes (records: Array<[Buffer, Buffer]>): number {
  let total = 0
  for (const [key, value] of records) total += paxRecordLength(key, value)
  return total
}

/** xattr names go into keywords with "%" and "=" escaped, as GNU tar does. */
export function encodeXattrKeyword (name: string): Buffer {
  return Buffer.from(PAX_XATTR_PREFIX + name.replace(/%/g, '%25').replace(/=/g, '%3D'), 'latin1')
}

function decodePercent (s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
}

/** Keywords as bytes, made once each (every entry has an mtime and an atime record). */
const KEYWORD_BYTES = new Map<string, Buffer>()

function keywordBytes (k: string): Buffer {
  let b = KEYWORD_BYTES.get(k)
  if (b === undefined) KEYWORD_BYTES.set(k, b = Buffer.from(k, 'latin1'))
  return b
}

function paxPairs (records: Array<[string | Buffer, Buffer | string]>): Array<[Buffer, Buffer]> {
  return records.map(([k, v]) => [typeof k === 'string' ? keywordBytes(k) : k, typeof v === 'string' ? Buffer.from(v, 'utf8') : v])
}

export function encodePax (records: Array<[string | Buffer, Buffer | string]>): Buffer {
  const pairs = paxPairs(records)
  const out = Buffer.allocUnsafe(paxBytes(pairs))
  writePaxRecords(pairs, out, 0)
  return out
}

/** Parses "LEN KEY=VALUE\n" records; keys are latin1 strings, values stay raw. */
export function decodePax (buf: Buffer, entry: string): PaxRecords {
  const out: PaxRecords = new Map()
  let pos = 0
  while (pos < buf.length) {
    if (buf[pos] === 0) break // padding after the last record
    const space = buf.indexOf(0x20, pos)
    const len = space < 0 ? NaN : Number(buf.subarray(pos, space).toString('latin1'))
    if (!Number.isSafeInteger(len) || len <= space - pos + 1 || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) {
      throw new SiError('ERR_ARCHIVE', `entry after "${entry}": malformed pax record at byte ${pos}`)
    }
    const rec = buf.subarray(space + 1, pos + len - 1)
    const eq = rec.indexOf(0x3d)
    if (eq <= 0) throw new SiError('ERR_ARCHIVE', `entry after "${entry}": pax record without a key`)
    out.set(rec.subarray(0, eq).toString('latin1'), Buffer.from(rec.subarray(eq + 1)))
    pos += len
  }
  return out
}

// ---- ustar header ---------------------------------------------------------------------

/**
 * `value` as size-1 octal digits (zero-padded) and a NUL, written byte by byte: a header
 * has seven such fields and a pack writes a header per entry, so no string is made.
 * Values are the callers' clamped ones: they fit the field.
 */
function writeOctal (buf: Buffer, offset: number, size: number, value: number | bigint): void {
  let v = Number(value)
  buf[offset + size - 1] = 0
  for (let i = offset + size - 2; i >= offset; i--) {
    buf[i] = 0x30 + (v % 8)
    v = Math.floor(v / 8)
  }
}

function writeBytes (buf: Buffer, offset: number, size: number, bytes: Buffer): void {
  bytes.copy(buf, offset, 0, Math.min(size, bytes.length))
}

/** Splits a path into ustar's prefix and name fields, or undefined when it cannot fit. */
function splitUstarPath (path: Buffer): { prefix: Buffer; name: Buffer } | undefined {
  if (path.length <= NAME_FIELD) return { prefix: Buffer.alloc(0), name: path }
  for (let i = path.length - 1; i > 0; i--) {
    if (path[i] !== 0x2f) continue
    const prefix = path.subarray(0, i)
    const name = path.subarray(i + 1)
    if (prefix.length <= PREFIX_FIELD && name.length <= NAME_FIELD && name.length > 0) return { prefix, name }
    if (prefix.length <= PREFIX_FIELD) break
  }
  return undefined
}

/** The checksum of the header block at `offset`, its own field counted as spaces. */
function checksum (block: Buffer, offset: number): number {
  let sum = 8 * 0x20
  for (let i = offset; i < offset + 148; i++) sum += block[i]
  for (let i = offset + 156; i < offset + BLOCK; i++) sum += block[i]
  return sum
}

interface UstarFields {
  name: Buffer
  prefix?: Buffer
  mode: number
  uid: number
  gid: number
  size: number
  mtime: bigint
  typeflag: number
  linkname?: Buffer
  uname?: string
  gname?: string
  devmajor?: number
  devminor?: number
}

/** Writes a ustar header block into the zeroed block of `b` at `o`. */
function writeUstarHeader (f: UstarFields, b: Buffer, o: number): void {
  writeBytes(b, o, NAME_FIELD, f.name)
  writeOctal(b, o + 100, 8, f.mode & 0o7777)
  writeOctal(b, o + 108, 8, Math.min(f.uid, USTAR_MAX_ID))
  writeOctal(b, o + 116, 8, Math.min(f.gid, USTAR_MAX_ID))
  writeOctal(b, o + 124, 12, Math.min(f.size, USTAR_MAX_SIZE))
  writeOctal(b, o + 136, 12, f.mtime < 0n ? 0n : f.mtime > BigInt(USTAR_MAX_MTIME) ? BigInt(USTAR_MAX_MTIME) : f.mtime)
  b[o + 156] = f.typeflag
  if (f.linkname !== undefined) writeBytes(b, o + 157, NAME_FIELD, f.linkname)
  b.write('ustar\x0000', o + 257, 8, 'latin1')
  if (f.uname !== undefined) b.write(f.uname, o + 265, OWNER_NAME_FIELD - 1, 'utf8')
  if (f.gname !== undefined) b.write(f.gname, o + 297, OWNER_NAME_FIELD - 1, 'utf8')
  writeOctal(b, o + 329, 8, Math.min(f.devmajor ?? 0, USTAR_MAX_ID))
  writeOctal(b, o + 337, 8, Math.min(f.devminor ?? 0, USTAR_MAX_ID))
  if (f.prefix !== undefined) writeBytes(b, o + 345, PREFIX_FIELD, f.prefix)
  writeOctal(b, o + 148, 7, checksum(b, o)) // six digits, NUL,
  b[o + 155] = 0x20 // then a space, as GNU tar has it
}

export function padding (size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK
}

/** The text block that starts a GNU sparse 1.0 member's data: count, then offset/length pairs. */
export function encodeSparseMap (map: Array<[number, number]>): Buffer {
  const text = [String(map.length), ...map.flatMap(([o, l]) => [String(o), String(l)])].join('\n') + '\n'
  const raw = Buffer.from(text, 'latin1')
  return Buffer.concat([raw, Buffer.alloc(padding(raw.length))])
}

function withDotSlash (path: Buffer, type: EntryType): Buffer {
  // GNU tar's convention for `tar -C DIR .`: every name starts with "./".
  const slash = type === 'directory' && path.length > 0
  const out = Buffer.allocUnsafe(DOT_SLASH.length + path.length + (slash ? 1 : 0))
  DOT_SLASH.copy(out, 0)
  path.copy(out, DOT_SLASH.length)
  if (slash) out[out.length - 1] = 0x2f
  return out
}

function ownerName (name: string | undefined): string | undefined {
  return name !== undefined && Buffer.byteLength(name) < OWNER_NAME_FIELD ? name : undefined
}

/** Bytes stored in the archive for an entry's body (sparse map and padding included). */
export function storedSize (e: TarEntry): number {
  if (e.type !== 'file') return 0
  if (e.sparse === undefined) return e.size
  return encodeSparseMap(e.sparse).length + e.sparse.reduce((n, [, l]) => n + l, 0)
}

/**
 * The header blocks (pax extended header if needed, then ustar) of an entry. The body,
 * padded to 512 bytes, follows for regular files.
 */
export function encodeHeader (e: TarEntry, opts: { verbatimPath?: boolean } = {}): Buffer {
  // verbatimPath: the name exactly as given (tests write hostile archives with it).
  const full = opts.verbatimPath === true ? e.path : withDotSlash(e.path, e.type)
  const body = storedSize(e)
  const pax: Array<[string | Buffer, Buffer | string]> = []
  const sparse = e.sparse !== undefined
  let name: Buffer = full
  let prefix: Buffer | undefined
  if (sparse) {
    // GNU tar's layout: the real name in the pax record, a placeholder in ustar.
    pax.push(['GNU.sparse.major', '1'], ['GNU.sparse.minor', '0'], ['GNU.sparse.name', full], ['GNU.sparse.realsize', String(e.size)])
    const base = e.path.subarray(e.path.lastIndexOf(0x2f) + 1)
    name = Buffer.concat([Buffer.from(`./${SPARSE_NAME_DIR}/`), base]).subarray(0, NAME_FIELD)
  } else {
    const split = splitUstarPath(full)
    if (split === undefined) {
      pax.push(['path', full])
      name = full.subarray(0, NAME_FIELD)
    } else {
      name = split.name
      prefix = split.prefix
    }
  }
  if (e.linkpath !== undefined && e.linkpath.length > NAME_FIELD) pax.push(['linkpath', e.linkpath])
  if (body > USTAR_MAX_SIZE) pax.push(['size', String(body)])
  if (e.uid > USTAR_MAX_ID) pax.push(['uid', String(e.uid)])
  if (e.gid > USTAR_MAX_ID) pax.push(['gid', String(e.gid)])
  const mtimeS = floorSeconds(e.mtimeNs)
  if (e.mtimeNs % NS_PER_S !== 0n || mtimeS < 0n || mtimeS > BigInt(USTAR_MAX_MTIME)) pax.push(['mtime', formatPaxTime(e.mtimeNs)])
  if (e.atimeNs !== undefined && e.atimeNs !== e.mtimeNs) pax.push(['atime', formatPaxTime(e.atimeNs)])
  if ((e.devmajor ?? 0) > USTAR_MAX_ID) pax.push([PAX_DEVMAJOR, String(e.devmajor)])
  if ((e.devminor ?? 0) > USTAR_MAX_ID) pax.push([PAX_DEVMINOR, String(e.devminor)])
  if (e.aclAccess !== undefined) pax.push([PAX_ACL_ACCESS, e.aclAccess])
  if (e.aclDefault !== undefined) pax.push([PAX_ACL_DEFAULT, e.aclDefault])
  for (const [k, v] of [...(e.xattrs ?? new Map<string, Buffer>())].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    pax.push([encodeXattrKeyword(k), v])
  }

  const main: UstarFields = {
    name,
    prefix,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: body,
    mtime: mtimeS,
    typeflag: TYPE_FLAGS[e.type],
    linkname: e.linkpath?.subarray(0, NAME_FIELD),
    uname: ownerName(e.uname),
    gname: ownerName(e.gname),
    devmajor: e.devmajor,
    devminor: e.devminor
  }
  if (pax.length === 0) {
    const block = Buffer.alloc(BLOCK)
    writeUstarHeader(main, block, 0)
    return block
  }
  // One buffer for the pax header, its records (padded) and the ustar header.
  const records = paxPairs(pax)
  const dataLength = paxBytes(records)
  const dataBlocks = dataLength + padding(dataLength)
  const out = Buffer.alloc(BLOCK + dataBlocks + BLOCK)
  const base = full.subarray(full.lastIndexOf(0x2f, full.length - 2) + 1)
  writeUstarHeader({
    name: Buffer.concat([PAX_HEADER_DIR, base]),
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: dataLength,
    mtime: mtimeS,
    typeflag: 0x78 // 'x'
  }, out, 0)
  writePaxRecords(records, out, BLOCK)
  writeUstarHeader(main, out, BLOCK + dataBlocks)
  return out
}

// ---- decoding -------------------------------------------------------------------------

export interface RawHeader {
  name: Buffer
  mode: number
  uid: number
  gid: number
  size: number
  mtime: number
  typeflag: number
  linkname: Buffer
  uname: string
  gname: string
  devmajor: number
  devminor: number
}

function field (b: Buffer, offset: number, size: number): Buffer {
  const end = b.indexOf(0, offset)
  return b.subarray(offset, end < 0 || end > offset + size ? offset + size : end)
}

function readNumber (b: Buffer, offset: number, size: number, what: string): number {
  if ((b[offset] & 0x80) !== 0) {
    // GNU base-256: big-endian two's complement after the marker bit.
    if (b[offset] === 0xff) throw new SiError('ERR_ARCHIVE', `negative ${what} in a tar header`)
    let n = BigInt(b[offset] & 0x7f)
    for (let i = 1; i < size; i++) n = (n << 8n) | BigInt(b[offset + i])
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new SiError('ERR_ARCHIVE', `${what} out of range in a tar header`)
    return Number(n)
  }
  const text = field(b, offset, size).toString('latin1').trim()
  if (text === '') return 0
  if (!/^[0-7]+$/.test(text)) throw new SiError('ERR_ARCHIVE', `invalid ${what} "${text}" in a tar header`)
  return parseInt(text, 8)
}

/** Decodes a header block; undefined for an all-zero (end) block. */
export function decodeHeader (b: Buffer): RawHeader | undefined {
  if (b.every(x => x === 0)) return undefined
  const stored = readNumber(b, 148, 8, 'checksum')
  if (stored !== checksum(b, 0)) {
    // Some old tars summed signed bytes.
    let signed = 0
    for (let i = 0; i < BLOCK; i++) signed += i >= 148 && i < 156 ? 0x20 : (b[i] << 24) >> 24
    if (stored !== signed) throw new SiError('ERR_ARCHIVE', 'tar header checksum mismatch (not a tar archive, or corrupted)')
  }
  let name = field(b, 0, NAME_FIELD)
  const magic = b.subarray(257, 263).toString('latin1')
  if (magic === 'ustar\0' && b[345] !== 0) name = Buffer.concat([field(b, 345, PREFIX_FIELD), Buffer.from('/'), name])
  return {
    name: Buffer.from(name),
    mode: readNumber(b, 100, 8, 'mode'),
    uid: readNumber(b, 108, 8, 'uid'),
    gid: readNumber(b, 116, 8, 'gid'),
    size: readNumber(b, 124, 12, 'size'),
    mtime: readNumber(b, 136, 12, 'mtime'),
    typeflag: b[156],
    linkname: Buffer.from(field(b, 157, NAME_FIELD)),
    uname: field(b, 265, OWNER_NAME_FIELD).toString('utf8'),
    gname: field(b, 297, OWNER_NAME_FIELD).toString('utf8'),
    devmajor: readNumber(b, 329, 8, 'devmajor'),
    devminor: readNumber(b, 337, 8, 'devminor')
  }
}

export function entryTypeOf (typeflag: number): EntryType | undefined {
  switch (typeflag) {
    case 0: case 0x30: case 0x37: return 'file'
    case 0x31: return 'link'
    case 0x32: return 'symlink'
    case 0x33: return 'character-device'
    case 0x34: return 'block-device'
    case 0x35: return 'directory'
    case 0x36: return 'fifo'
    default: return undefined
  }
}

/** Strips "./" prefixes and trailing slashes; "" is the archive root. */
export function normalizeArchivePath (p: Buffer): Buffer {
  let s = 0
  while (p.length - s >= 2 && p[s] === 0x2e && p[s + 1] === 0x2f) {
    s += 2
    while (p[s] === 0x2f) s++
  }
  let e = p.length
  while (e > s && p[e - 1] === 0x2f) e--
  const out = p.subarray(s, e)
  return out.length === 1 && out[0] === 0x2e ? Buffer.alloc(0) : Buffer.from(out)
}

const UNSIGNED = /^[0-9]{1,16}$/

function paxUnsigned (pax: PaxRecords, key: string, what: string): number | undefined {
  const v = pax.get(key)?.toString('latin1')
  if (v === undefined) return undefined
  if (!UNSIGNED.test(v) || !Number.isSafeInteger(Number(v))) throw new SiError('ERR_ARCHIVE', `${what}: invalid pax ${key} "${v}"`)
  return Number(v)
}

/** Builds the entry an archive member describes, pax records (local over global) applied. */
export function entryFromHeader (h: RawHeader, pax: PaxRecords, longName?: Buffer, longLink?: Buffer): { entry: TarEntry; stored: number; sparseMajor?: string } {
  const nameBytes = pax.get('GNU.sparse.name') ?? pax.get('path') ?? longName ?? h.name
  const path = normalizeArchivePath(nameBytes)
  const what = `entry "${printableBytes(path) || '.'}"`
  const type = entryTypeOf(h.typeflag)
  if (type === undefined) {
    const flag = String.fromCharCode(h.typeflag)
    const why = flag === 'S' ? 'old GNU sparse format (repack with --format=posix)' : `unsupported entry type "${flag}"`
    throw new SiError('ERR_ARCHIVE', `${what}: ${why}`)
  }
  const stored = paxUnsigned(pax, 'size', what) ?? h.size
  const mtimeNs = pax.has('mtime') ? parsePaxTime(pax.get('mtime')!.toString('latin1'), what) : BigInt(h.mtime) * NS_PER_S
  const entry: TarEntry = {
    path,
    type,
    mode: h.mode & 0o7777,
    uid: paxUnsigned(pax, 'uid', what) ?? h.uid,
    gid: paxUnsigned(pax, 'gid', what) ?? h.gid,
    mtimeNs,
    size: type === 'file' ? stored : 0
  }
  const uname = pax.get('uname')?.toString('utf8') ?? h.uname
  const gname = pax.get('gname')?.toString('utf8') ?? h.gname
  if (uname !== '') entry.uname = uname
  if (gname !== '') entry.gname = gname
  if (pax.has('atime')) entry.atimeNs = parsePaxTime(pax.get('atime')!.toString('latin1'), what)
  if (type === 'symlink' || type === 'link') entry.linkpath = pax.get('linkpath') ?? longLink ?? h.linkname
  if (type === 'character-device' || type === 'block-device') {
    entry.devmajor = paxUnsigned(pax, PAX_DEVMAJOR, what) ?? h.devmajor
    entry.devminor = paxUnsigned(pax, PAX_DEVMINOR, what) ?? h.devminor
  }
  for (const [key, value] of pax) {
    if (key.startsWith(PAX_XATTR_PREFIX)) {
      const name = decodePercent(key.slice(PAX_XATTR_PREFIX.length))
      if (isAclXattr(name)) continue // GNU tar repeats ACLs here; SCHILY.acl.* is authoritative
      ;(entry.xattrs ??= new Map()).set(name, value)
    } else if (key.startsWith(PAX_LIBARCHIVE_XATTR_PREFIX)) {
      const name = decodeURIComponentBytes(key.slice(PAX_LIBARCHIVE_XATTR_PREFIX.length))
      if (!isAclXattr(name) && !entry.xattrs?.has(name)) (entry.xattrs ??= new Map()).set(name, Buffer.from(value.toString('latin1'), 'base64'))
    }
  }
  const access = pax.get(PAX_ACL_ACCESS)?.toString('utf8')
  const deflt = pax.get(PAX_ACL_DEFAULT)?.toString('utf8')
  if (access !== undefined && access.trim() !== '') entry.aclAccess = access
  if (deflt !== undefined && deflt.trim() !== '') entry.aclDefault = deflt
  const major = pax.get('GNU.sparse.major')?.toString('latin1')
  if (major !== undefined || pax.has('GNU.sparse.map') || pax.has('GNU.sparse.size')) {
    const minor = pax.get('GNU.sparse.minor')?.toString('latin1')
    if (major !== '1' || minor !== '0') throw new SiError('ERR_ARCHIVE', `${what}: GNU sparse format ${major ?? '0'}.${minor ?? 'x'} is not supported (1.0 is)`)
    entry.size = paxUnsigned(pax, 'GNU.sparse.realsize', what) ?? paxUnsigned(pax, 'GNU.sparse.size', what) ?? 0
    return { entry, stored, sparseMajor: major }
  }
  return { entry, stored }
}

export function isAclXattr (name: string): boolean {
  return name === 'system.posix_acl_access' || name === 'system.posix_acl_default'
}

function decodeURIComponentBytes (s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
}

/** Readable when the bytes are UTF-8, escaped (\xNN) where they are not: for messages. */
export function printableBytes (bytes: Buffer): string {
  const s = bytes.toString('utf8')
  if (Buffer.from(s, 'utf8').equals(bytes)) return s
  let out = ''
  for (const b of bytes) out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`
  return out
}
