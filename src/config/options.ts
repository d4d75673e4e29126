// Settings an administrator gives, defined once each: the flag, the environment variable
// and the kernel command line key that carry it, the parser every source goes through
// (so `--seed-wait SWARM`, SI_SEED_WAIT=swarm and si.seed_wait=Swarm mean the same), the
// default, and the help text that --help and the README show. Each component (agent
// deploy, agent install, server) lists its options in its own config module; this one
// only reads them.
import { SiError } from '../errors.ts'

/** A parser says what it expected when the text does not fit; the caller names the source. */
export class OptionValueError extends Error {
  constructor (readonly expected: string) {
    super(`expected ${expected}`)
    this.name = 'OptionValueError'
  }
}

export interface OptionSpec<T> {
  /** --FLAG on the command line (a switch is turned off with --no-FLAG when on by default) */
  flag: string
  /** placeholder after the flag in --help; absent for a switch */
  arg?: string
  /** what the setting does, for --help; the default is appended */
  help: string
  /** from the text of any source to the value; throws OptionValueError */
  parse: (text: string) => T
  default?: T
  /** the default as --help shows it, when the value itself does not say it (computed at run time) */
  defaultText?: string
  /** environment variable */
  env?: string
  /** kernel command line key (si.*) */
  param?: string
  /** other kernel command line names for the same setting (SystemImager's, for people migrating) */
  aliases?: string[]
  /** may be given several times on the command line; the values are collected in order */
  repeatable?: boolean
}

export type Options = Record<string, OptionSpec<unknown>>

/** An option's value once read: its type, or undefined when it has no default and was not given. */
export type ValueOf<O> = O extends { default: infer D } ? D : O extends OptionSpec<infer T> ? T | undefined : never
export type Values<O extends Options> = { [K in keyof O]: ValueOf<O[K]> }

/** Typed definition; with a default the value is never undefined. */
export function option<T> (spec: OptionSpec<T> & { default: T }): OptionSpec<T> & { default: T }
export function option<T> (spec: OptionSpec<T>): OptionSpec<T>
export function option<T> (spec: OptionSpec<T>): OptionSpec<T> { return spec }

/** A switch (no value on the command line; yes/no in the environment and on the kernel line). */
export function switchOption (spec: Omit<OptionSpec<boolean>, 'parse' | 'arg' | 'default'> & { default?: boolean }): OptionSpec<boolean> & { default: boolean } {
  return { ...spec, parse: parseSwitch, default: spec.default ?? false }
}

/** A repeatable option: each occurrence parsed alone, the list in the given order. */
export function listOption<T> (spec: Omit<OptionSpec<T[]>, 'parse' | 'repeatable' | 'default'> & { parseItem: (text: string) => T }): OptionSpec<T[]> & { default: T[] } {
  const { parseItem, ...rest } = spec
  return { ...rest, repeatable: true, default: [], parse: text => text.split(',').filter(t => t !== '').map(parseItem) }
}

const SWITCH_WORDS: Record<string, boolean> = { y: true, yes: true, true: true, on: true, 1: true, n: false, no: false, false: false, off: false, 0: false }

export function parseSwitch (text: string): boolean {
  const v = SWITCH_WORDS[text.trim().toLowerCase()]
  if (v === undefined) throw new OptionValueError('yes or no')
  return v
}

/** What the command line gave: a string per flag, a list for repeatable ones, a boolean for switches. */
export type FlagValues = Record<string, string | string[] | boolean | undefined>

export interface OptionSources {
  /** key=value words of the kernel command line (see install/cmdline.ts) */
  cmdline?: ReadonlyMap<string, string>
  env?: NodeJS.ProcessEnv
  flags?: FlagValues
}

export interface ReadOptions<O extends Options> {
  values: Values<O>
  /** where each value that was given came from, for the log: "--image", "environment SI_IMAGE", ... */
  origins: Partial<Record<keyof O, string>>
}

interface Given { text: string | string[] | boolean; origin: string; fromFlag: boolean }

/** The text each option was given with, the later source winning: kernel command line, environment, flags. */
function collect (spec: OptionSpec<unknown>, sources: OptionSources): Given | undefined {
  let given: Given | undefined
  if (spec.param !== undefined && sources.cmdline !== undefined) {
    // The si.* key wins over an alias of the same setting.
    for (const name of [...(spec.aliases ?? [])].reverse().concat(spec.param)) {
      const v = sources.cmdline.get(name)
      if (v !== undefined) given = { text: v, origin: `kernel command line ${name}`, fromFlag: false }
    }
  }
  const e = spec.env === undefined ? undefined : sources.env?.[spec.env]
  if (e !== undefined && e !== '') given = { text: e, origin: `environment ${spec.env ?? ''}`, fromFlag: false }
  const f = sources.flags?.[spec.flag]
  if (f !== undefined && !(Array.isArray(f) && f.length === 0)) given = { text: f, origin: `--${spec.flag}`, fromFlag: true }
  return given
}

/** Names the source and the text in a typed error: a flag is a usage error, the others are configuration. */
export function invalidValue (origin: string, text: string, expected: string, fromFlag = origin.startsWith('--')): SiError {
  const shown = `${origin}${fromFlag ? ' ' : '='}${JSON.stringify(text)}`
  return new SiError(fromFlag ? 'ERR_INVALID_ARGUMENT' : 'ERR_CONFIG', `${shown}: expected ${expected}`)
}

function parseGiven (spec: OptionSpec<unknown>, given: Given): unknown {
  const texts = typeof given.text === 'boolean' ? undefined : Array.isArray(given.text) ? given.text : [given.text]
  if (texts === undefined) return given.text // a switch from the command line
  const values: unknown[] = []
  for (const text of texts) {
    try {
      values.push(spec.parse(text))
    } catch (err) {
      if (err instanceof OptionValueError) throw invalidValue(given.origin, text, err.expected, given.fromFlag)
      throw err
    }
  }
  return spec.repeatable === true ? values.flat() : values[0]
}

/** Reads every option from the sources; a value that does not parse fails naming where it came from. */
export function readOptions<O extends Options> (options: O, sources: OptionSources): ReadOptions<O> {
  const values: Record<string, unknown> = {}
  const origins: Partial<Record<keyof O, string>> = {}
  for (const [key, spec] of Object.entries(options)) {
    const given = collect(spec, sources)
    if (given === undefined) { values[key] = spec.default; continue }
    values[key] = parseGiven(spec, given)
    origins[key as keyof O] = given.origin
  }
  return { values: values as Values<O>, origins }
}

/** Kernel command line keys the options know, for spotting a mistyped si.* key. */
export function optionParams (options: Options): Set<string> {
  const names = new Set<string>()
  for (const spec of Object.values(options)) {
    if (spec.param !== undefined) names.add(spec.param)
    for (const a of spec.aliases ?? []) names.add(a)
  }
  return names
}
