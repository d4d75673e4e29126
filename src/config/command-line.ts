// Command-line parsing shared by both executables and the scripts: minimist underneath,
// plus what it lacks for a tool run by administrators: unknown flags refused, a flag
// given twice refused, values checked by the option's own parser (config/options.ts).
import minimist from 'minimist'
import { SiError } from '../errors.ts'
import { readOptions, type FlagValues, type Options, type ReadOptions } from './options.ts'

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

/** The minimist spec for a set of options. */
export function flagSpecOf (options: Options): FlagSpec {
  const spec: Required<FlagSpec> = { strings: [], booleans: [], repeatable: [], onByDefault: [] }
  for (const o of Object.values(options)) {
    if (o.arg === undefined) (o.default === true ? spec.onByDefault : spec.booleans).push(o.flag)
    else (o.repeatable === true ? spec.repeatable : spec.strings).push(o.flag)
  }
  return spec
}

export interface GivenFlags { positional: string[]; flags: FlagValues; help: boolean }

/** The flags given on the command line, unparsed: a switch counts only when turned over. */
export function givenFlags (argv: string[], options: Options): GivenFlags {
  const spec = flagSpecOf(options)
  const args = parseArgs(argv, spec)
  const onByDefault = new Set(spec.onByDefault)
  const flags: FlagValues = {}
  for (const [name, value] of Object.entries(args.flags)) {
    if (name === 'help') continue
    // minimist sets every switch; only one the user turned over counts as given.
    if (typeof value === 'boolean' && value === onByDefault.has(name)) continue
    flags[name] = value
  }
  return { positional: args.positional, flags, help: args.flags.help === true }
}

export interface CommandLine<O extends Options> extends ReadOptions<O> {
  positional: string[]
  help: boolean
}

/**
 * A command's argv read against its options, layered over the environment: one parser
 * per setting, whatever the source.
 */
export function readCommandLine<O extends Options> (argv: string[], options: O, sources: { env?: NodeJS.ProcessEnv } = {}): CommandLine<O> {
  const { positional, flags, help } = givenFlags(argv, options)
  return { positional, help, ...readOptions(options, help ? {} : { ...sources, flags }) }
}

export function noExtraPositionals (positional: string[], count: number, usage: string): void {
  if (positional.length > count) throw new SiError('ERR_INVALID_ARGUMENT', `unexpected argument ${JSON.stringify(positional[count])}; ${usage.split('\n')[0].replace(/^(usage: )?/, 'usage: ')}`)
}

/** A value the command cannot do without. */
export function required<T> (value: T | undefined, flag: string, what: string): T {
  if (value === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `--${flag} ${what} is required`)
  return value
}
