// The initramfs contents list: a plain text file administrators extend (see
// initrd/contents.txt for the syntax). Parsing only; resolving is the builder's job.
import { SiError } from '../../src/errors.ts'

export type Item =
  | { kind: 'busybox'; source: string; optional: boolean; part: string }
  | { kind: 'exec'; source: string; dest: string; optional: boolean; part: string }
  | { kind: 'file'; source: string; dest: string; mode?: number; optional: boolean; part: string }
  | { kind: 'module'; name: string; optional: boolean; part: string }
  | { kind: 'symlink'; dest: string; target: string; optional: false; part: string }

const DEFAULT_PART = 'misc'
const PART_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/
const MODE = /^0?[0-7]{3,4}$/

/** `text` is one list; `origin` names it in error messages. */
export function parseContents (text: string, origin: string): Item[] {
  const items: Item[] = []
  let part = DEFAULT_PART
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*/, '').trim()
    if (line === '') return
    const where = `${origin}:${index + 1}`
    const words = line.split(/\s+/)
    let keyword = words[0]
    const optional = keyword.startsWith('?')
    if (optional) keyword = keyword.slice(1)
    const args = words.slice(1)
    const need = (min: number, max: number): void => {
      if (args.length < min || args.length > max) throw new SiError('ERR_INITRD', `${where}: "${keyword}" takes ${min === max ? min : `${min} to ${max}`} argument(s), got ${args.length}`)
    }
    switch (keyword) {
      case 'part':
        need(1, 1)
        if (!PART_NAME.test(args[0])) throw new SiError('ERR_INITRD', `${where}: invalid part name ${JSON.stringify(args[0])}`)
        part = args[0]
        return
      case 'busybox':
        need(1, 1)
        items.push({ kind: 'busybox', source: args[0], optional, part })
        return
      case 'exec':
        need(1, 2)
        items.push({ kind: 'exec', source: args[0], dest: args[1] ?? args[0], optional, part })
        return
      case 'file': {
        need(1, 3)
        const mode = args[2]
        if (mode !== undefined && !MODE.test(mode)) throw new SiError('ERR_INITRD', `${where}: invalid mode ${JSON.stringify(mode)} (octal, e.g. 0755)`)
        items.push({ kind: 'file', source: args[0], dest: args[1] ?? args[0], mode: mode === undefined ? undefined : parseInt(mode, 8), optional, part })
        return
      }
      case 'module':
        need(1, Infinity)
        for (const name of args) items.push({ kind: 'module', name, optional, part })
        return
      case 'symlink':
        need(2, 2)
        if (optional) throw new SiError('ERR_INITRD', `${where}: a symlink cannot be optional`)
        items.push({ kind: 'symlink', dest: args[0], target: args[1], optional: false, part })
        return
      default:
        throw new SiError('ERR_INITRD', `${where}: unknown keyword ${JSON.stringify(keyword)} (expected part, busybox, exec, file, module or symlink)`)
    }
  })
  return items
}
