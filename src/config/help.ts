// --help text from the options themselves: the flag, its placeholder, what it does and
// its default, from the one place each is defined. The README's help blocks are this
// output (test/readme-help.test.ts checks them against the executables).
import type { Options, OptionSpec } from './options.ts'

/** Where descriptions start, and where lines wrap. */
const DESCRIPTION_COLUMN = 27
const LINE_WIDTH = 96

function shownDefault (o: OptionSpec<unknown>): string | undefined {
  if (o.defaultText !== undefined) return o.defaultText
  if (o.arg === undefined || o.default === undefined || (Array.isArray(o.default) && o.default.length === 0)) return undefined
  return typeof o.default === 'object' ? undefined : String(o.default)
}

function wrap (words: string[], width: number): string[] {
  const lines: string[] = []
  let line = ''
  for (const w of words) {
    if (line !== '' && line.length + 1 + w.length > width) { lines.push(line); line = w } else line = line === '' ? w : `${line} ${w}`
  }
  if (line !== '') lines.push(line)
  return lines
}

/** Which other sources each option line names: kernel command line keys, environment variables. */
export interface HelpStyle { params?: boolean; env?: boolean }

/** One option: flag and placeholder, then the description wrapped in its column. */
export function optionHelp (o: OptionSpec<unknown>, opts: HelpStyle = {}): string {
  const flag = o.arg === undefined && o.default === true ? `--no-${o.flag}` : `--${o.flag}${o.arg !== undefined ? ` ${o.arg}` : ''}`
  const parts = [o.help]
  const def = shownDefault(o)
  if (def !== undefined) parts.push(`(default ${def})`)
  if (opts.params === true && o.param !== undefined) parts.push(`[${[o.param, ...(o.aliases ?? [])].join(', ')}]`)
  if (opts.env === true && o.env !== undefined) parts.push(`[${o.env}]`)
  const head = `  ${flag}`
  const body = wrap(parts.join(' ').split(/\s+/), LINE_WIDTH - DESCRIPTION_COLUMN)
  const pad = ' '.repeat(DESCRIPTION_COLUMN)
  const first = head.length < DESCRIPTION_COLUMN - 1 ? [`${head.padEnd(DESCRIPTION_COLUMN)}${body.shift() ?? ''}`] : [head]
  return [...first, ...body.map(l => `${pad}${l}`)].join('\n').trimEnd()
}

export function optionsHelp (options: Options, opts: HelpStyle = {}): string {
  return Object.values(options).map(o => optionHelp(o, opts)).join('\n')
}

/** usage lines, an optional paragraph, then the options. */
export function commandHelp (usage: string[], options: Options, opts: HelpStyle & { intro?: string; outro?: string } = {}): string {
  const blocks = [usage.map((u, i) => `${i === 0 ? 'usage: ' : '       '}${u}`).join('\n')]
  if (opts.intro !== undefined) blocks.push(opts.intro.trim())
  if (Object.keys(options).length > 0) blocks.push(optionsHelp(options, opts))
  if (opts.outro !== undefined) blocks.push(opts.outro.trim())
  return blocks.join('\n\n') + '\n'
}
