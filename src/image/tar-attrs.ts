// Where file-system numbers meet tar's: device numbers and owner-name tables shared by the
// packer, the extractor and the checker.

/** Linux's dev_t layout (glibc gnu_dev_major/minor). */
export function splitRdev (rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n)
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n)
  return { major: Number(major), minor: Number(minor) }
}

/** name -> id from an /etc/passwd or /etc/group text (first occurrence wins). */
export function parseIdTable (text: string): Map<string, number> {
  const ids = new Map<string, number>()
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':')
    const n = Number(id)
    if (name && id !== undefined && id !== '' && Number.isSafeInteger(n) && !ids.has(name)) ids.set(name, n)
  }
  return ids
}
