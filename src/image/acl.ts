// POSIX ACLs between the kernel's xattr form (system.posix_acl_access/default, the
// bytes getfattr dumps and setfattr restores) and the text GNU tar keeps in
// SCHILY.acl.access/default. We write numeric ids only: names would be resolved against
// the packing host's users, which mean nothing to the image.
import { SiError } from '../errors.ts'

export const XATTR_ACL_ACCESS = 'system.posix_acl_access'
export const XATTR_ACL_DEFAULT = 'system.posix_acl_default'
const ACL_XATTR_VERSION = 2
const HEADER_BYTES = 4
const ENTRY_BYTES = 8
const UNDEFINED_ID = 0xffffffff

const TAGS = { user_obj: 0x01, user: 0x02, group_obj: 0x04, group: 0x08, mask: 0x10, other: 0x20 } as const
type Tag = typeof TAGS[keyof typeof TAGS]

interface AclEntry { tag: Tag; id: number; perm: number }

function permText (perm: number): string {
  return (perm & 4 ? 'r' : '-') + (perm & 2 ? 'w' : '-') + (perm & 1 ? 'x' : '-')
}

function parsePerm (text: string, line: string): number {
  const m = /^([r-])([w-])([xX-])$/.exec(text)
  if (m === null) throw new SiError('ERR_ARCHIVE', `ACL entry "${line}": bad permissions "${text}"`)
  return (m[1] === 'r' ? 4 : 0) | (m[2] === 'w' ? 2 : 0) | (m[3] === '-' ? 0 : 1)
}

/** Kernel xattr bytes to GNU tar's text form (one entry per line, numeric qualifiers). */
export function aclXattrToText (value: Buffer): string {
  if (value.length < HEADER_BYTES || (value.length - HEADER_BYTES) % ENTRY_BYTES !== 0 || value.readUInt32LE(0) !== ACL_XATTR_VERSION) {
    throw new SiError('ERR_ARCHIVE', `unrecognised ACL xattr (${value.length} bytes)`)
  }
  const lines: string[] = []
  for (let off = HEADER_BYTES; off < value.length; off += ENTRY_BYTES) {
    const tag = value.readUInt16LE(off)
    const perm = permText(value.readUInt16LE(off + 2))
    const id = value.readUInt32LE(off + 4)
    switch (tag) {
      case TAGS.user_obj: lines.push(`user::${perm}`); break
      case TAGS.user: lines.push(`user:${id}:${perm}`); break
      case TAGS.group_obj: lines.push(`group::${perm}`); break
      case TAGS.group: lines.push(`group:${id}:${perm}`); break
      case TAGS.mask: lines.push(`mask::${perm}`); break
      case TAGS.other: lines.push(`other::${perm}`); break
      default: throw new SiError('ERR_ARCHIVE', `unrecognised ACL tag ${tag}`)
    }
  }
  return lines.join('\n') + '\n'
}

export type NameResolver = (kind: 'user' | 'group', name: string) => number | undefined

/**
 * Text (GNU tar's, or getfacl's short form: lines or commas, optional trailing numeric
 * id field as star writes it) back to kernel xattr bytes, entries in the order the kernel
 * requires. Names are resolved by `resolve`, else refused.
 */
export function aclTextToXattr (text: string, resolve?: NameResolver): Buffer {
  const entries: AclEntry[] = []
  for (const raw of text.split(/[\n,]/)) {
    const line = raw.replace(/#.*$/, '').trim()
    if (line === '') continue
    const parts = line.split(':')
    if (parts.length < 3 || parts.length > 4) throw new SiError('ERR_ARCHIVE', `ACL entry "${line}" is malformed`)
    const [kind, qualifier, perms, numeric] = parts
    const perm = parsePerm(perms, line)
    const named = qualifier !== ''
    let id = UNDEFINED_ID
    if (named) {
      const n = numeric ?? qualifier
      if (/^[0-9]{1,10}$/.test(n) && Number(n) < UNDEFINED_ID) id = Number(n)
      else {
        const r = kind === 'user' || kind === 'u' ? resolve?.('user', qualifier) : kind === 'group' || kind === 'g' ? resolve?.('group', qualifier) : undefined
        if (r === undefined) throw new SiError('ERR_ARCHIVE', `ACL entry "${line}": unknown name "${qualifier}"`)
        id = r
      }
    }
    let tag: Tag
    switch (kind) {
      case 'user': case 'u': tag = named ? TAGS.user : TAGS.user_obj; break
      case 'group': case 'g': tag = named ? TAGS.group : TAGS.group_obj; break
      case 'mask': case 'm': tag = TAGS.mask; break
      case 'other': case 'o': tag = TAGS.other; break
      default: throw new SiError('ERR_ARCHIVE', `ACL entry "${line}": unknown tag "${kind}"`)
    }
    entries.push({ tag, id: tag === TAGS.user || tag === TAGS.group ? id : UNDEFINED_ID, perm })
  }
  entries.sort((a, b) => a.tag - b.tag || a.id - b.id)
  const out = Buffer.alloc(HEADER_BYTES + entries.length * ENTRY_BYTES)
  out.writeUInt32LE(ACL_XATTR_VERSION, 0)
  entries.forEach((e, i) => {
    const off = HEADER_BYTES + i * ENTRY_BYTES
    out.writeUInt16LE(e.tag, off)
    out.writeUInt16LE(e.perm, off + 2)
    out.writeUInt32LE(e.id, off + 4)
  })
  return out
}

/** A canonical form for comparison: numeric, sorted, one line per entry. */
export function canonicalAcl (text: string, resolve?: NameResolver): string {
  return aclXattrToText(aclTextToXattr(text, resolve))
}
