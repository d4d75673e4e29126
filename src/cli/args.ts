// Command-line parsing shared by both executables: minimist underneath, plus what it
// lacks for a tool run by administrators: unknown flags refused, values checked.
import minimist from 'minimist'
import { SiError } from '../errors.ts'

export interface FlagSpec {
  strings?: string[]
  booleans?: string[]
  /** flags that may be given several times */
  repeatable?: string[]
  /** booleans that are on unless --no-NAME is given */
  onByDefault?: string[]
}

export interface ParsedArgs {
  positional: string[]
  flags: Record<string, string | boolean | string[] | undefined>
}

export function parseArgs (argv: string[], spec: FlagSpec): ParsedArgs {
  const strings = [...(spec.strings ?? []), ...(spec.repeatable ?? [])]
  const booleans = [...(spec.booleans ?? []), ...(spec.onByDefault ?? []), 'help']
  const parsed = minimist(argv, {
    string: strings,
    boolean: booleans,
    alias: { h: 'help' },
    default: Object.fromEntries((spec.onByDefault ?? []).map(name => [name, true])),
    unknown: arg => {
      if (arg.startsWith('-')) throw new SiError('ERR_INVALID_ARGUMENT', `unknown option ${arg.split('=')[0]}`)
      return true
    }
  })
  const flags: ParsedArgs['flags'] = {}
  for (const name of strings) {
    const v = parsed[name] as string | string[] | undefined
    if (v === undefined) continue
    if (Array.isArray(v) && !(spec.repeatable ?? []).includes(name)) throw new SiError('ERR_INVALID_ARGUMENT', `--${name} given more than once`)
    if ((spec.repeatable ?? []).includes(name)) flags[name] = Array.isArray(v) ? v : [v]
    else if (v === '') throw new SiError('ERR_INVALID_ARGUMENT', `--${name} needs a value`)
    else flags[name] = v
  }
  for (const name of booleans) flags[name] = parsed[name] === true
  return { positional: parsed._.map(String), flags }
}

export function stringFlag (args: ParsedArgs, name: string): string | undefined {
  const v = args.flags[name]
  return typeof v === 'string' ? v : undefined
}

export function requireFlag (args: ParsedArgs, name: string, what: string): string {
  const v = stringFlag(args, name)
  if (v === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `--${name} ${what} is required`)
  return v
}

export function numberFlag (args: ParsedArgs, name: string, opts: { min: number; max: number; integer?: boolean }): number | undefined {
  const v = stringFlag(args, name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n < opts.min || n > opts.max || (opts.integer === true && !Number.isInteger(n))) {
    throw new SiError('ERR_INVALID_ARGUMENT', `--${name} ${JSON.stringify(v)}: expected ${opts.integer === true ? 'an integer' : 'a number'} from ${opts.min} to ${opts.max}`)
  }
  return n
}

/** HOST:PORT, [v6]:PORT or :PORT / PORT (any address). */
export function parseHostPort (text: string, what: string): { host: string; port: number } {
  const m = /^(?:(?:\[([^\]]+)\]|([^:]*)):)?(\d{1,5})$/.exec(text)
  const port = m === null ? NaN : Number(m[3])
  if (m === null || !(port >= 0 && port <= 65535)) throw new SiError('ERR_INVALID_ARGUMENT', `${what} ${JSON.stringify(text)}: expected HOST:PORT`)
  const host = m[1] ?? (m[2] === undefined || m[2] === '' ? '0.0.0.0' : m[2])
  return { host, port }
}

export function noExtraPositionals (args: ParsedArgs, count: number, usage: string): void {
  if (args.positional.length > count) throw new SiError('ERR_INVALID_ARGUMENT', `unexpected argument ${JSON.stringify(args.positional[count])}; usage: ${usage}`)
}

const RATE_UNITS: Record<string, number> = {
  bit: 1 / 8, kbit: 1e3 / 8, mbit: 1e6 / 8, gbit: 1e9 / 8,
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1048576, gib: 1073741824
}

/** A bandwidth such as 40mbit, 1gbit, 5MB or 512KiB (per second), in bytes per second. */
export function parseRate (text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)([a-z]+)$/i.exec(text.trim())
  const unit = m === null ? undefined : RATE_UNITS[m[2].toLowerCase()]
  const value = m === null ? NaN : Number(m[1]) * (unit ?? NaN)
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new SiError('ERR_INVALID_ARGUMENT', `${what} ${JSON.stringify(text)}: expected a rate such as 40mbit, 1gbit, 5MB or 512KiB (per second)`)
  }
  return value
}

export function rateFlag (args: ParsedArgs, name: string): number | undefined {
  const text = stringFlag(args, name)
  return text === undefined ? undefined : parseRate(text, `--${name}`)
}
