// The initramfs contents list: a plain text file administrators extend (see
// initrd/contents.txt for the syntax). Parsing only; resolving is the builder's job.
import { SiError } from '../../src/errors.ts'

/** Where an item goes: its part, and whether that part is in the tool bundle instead of the initramfs. */
interface Placement { part: string; bundle: boolean }

export type Item = Placement & (
  | { kind: 'busybox'; source: string; optional: boolean }
  | { kind: 'exec'; source: string; dest: string; optional: boolean }
  | { kind: 'file'; source: string; dest: string; mode?: number; optional: boolean }
  | { kind: 'module'; name: string; optional: boolean }
  | { kind: 'symlink'; dest: string; target: string; optional: false })

const DEFAULT_PART = 'misc'
/** `part NAME bundle`: the part goes into the tool bundle. */
const BUNDLE_WORD = 'bundle'
const PART_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/
const MODE = /^0?[0-7]{3,4}$/

/** `text` is one list; `origin` names it in error messages. */
export function parseContents (text: string, origin: string): Item[] {
  const items: Item[] = []
  let part = DEFAULT_PART
  let bundle = false
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
        need(1, 2)
        if (!PART_NAME.test(args[0])) throw new SiError('ERR_INITRD', `${where}: invalid part name ${JSON.stringify(args[0])}`)
        if (args[1] !== undefined && args[1] !== BUNDLE_WORD) throw new SiError('ERR_INITRD', `${where}: "part ${args[0]} ${args[1]}": the only word after a part's name is "${BUNDLE_WORD}"`)
        part = args[0]
        bundle = args[1] === BUNDLE_WORD
        return
      case 'busybox':
        need(1, 1)
        items.push({ kind: 'busybox', source: args[0], optional, part, bundle })
        return
      case 'exec':
        need(1, 2)
        items.push({ kind: 'exec', source: args[0], dest: args[1] ?? args[0], optional, part, bundle })
        return
      case 'file': {
        need(1, 3)
        const mode = args[2]
        if (mode !== undefined && !MODE.test(mode)) throw new SiError('ERR_INITRD', `${where}: invalid mode ${JSON.stringify(mode)} (octal, e.g. 0755)`)
        items.push({ kind: 'file', source: args[0], dest: args[1] ?? args[0], mode: mode === undefined ? undefined : parseInt(mode, 8), optional, part, bundle })
        return
      }
      case 'module':
        need(1, Infinity)
        for (const name of args) items.push({ kind: 'module', name, optional, part, bundle })
        return
      case 'symlink':
        need(2, 2)
        if (optional) throw new SiError('ERR_INITRD', `${where}: a symlink cannot be optional`)
        items.push({ kind: 'symlink', dest: args[0], target: args[1], optional: false, part, bundle })
        return
      default:
        throw new SiError('ERR_INITRD', `${where}: unknown keyword ${JSON.stringify(keyword)} (expected part, busybox, exec, file, module or symlink)`)
    }
  })
  return items
}
