// Parsers for the values settings take, shared by every component so that a number, a
// rate, an address or a word means the same on the command line, in the environment and
// on the kernel command line. Each throws OptionValueError saying what it expected.
import { OptionValueError } from './options.ts'

/** si-server's HTTP port: what a bare HOST (SystemImager's IMAGESERVER=IP) means. */
export const DEFAULT_SERVER_PORT = 8470
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$/

export function integer (min: number, max: number): (text: string) => number {
  return text => {
    const n = Number(text)
    if (text.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new OptionValueError(`an integer from ${min} to ${max}`)
    return n
  }
}

export function decimal (min: number, max: number): (text: string) => number {
  return text => {
    const n = Number(text)
    if (text.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new OptionValueError(`a number from ${min} to ${max}`)
    return n
  }
}

/** One of a few words, in any case; `aliases` maps other words onto them. */
export function oneOf<W extends string> (words: readonly W[], aliases: Record<string, W> = {}): (text: string) => W {
  return text => {
    const lower = text.trim().toLowerCase()
    const word = aliases[lower] ?? words.find(w => w === lower)
    if (word === undefined) throw new OptionValueError(words.join(', '))
    return word
  }
}

export function nonEmpty (what: string): (text: string) => string {
  return text => {
    if (text.trim() === '') throw new OptionValueError(what)
    return text
  }
}

const RATE_UNITS: Record<string, number> = {
  bit: 1 / 8, kbit: 1e3 / 8, mbit: 1e6 / 8, gbit: 1e9 / 8,
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1048576, gib: 1073741824
}
export const RATE_EXAMPLES = 'a rate such as 40mbit, 1gbit, 5MB or 512KiB (per second)'

/** A bandwidth such as 40mbit, 1gbit, 5MB or 512KiB (per second), in bytes per second. */
export function rate (text: string): number {
  const m = /^(\d+(?:\.\d+)?)([a-z]+)$/i.exec(text.trim())
  const unit = m === null ? undefined : RATE_UNITS[m[2].toLowerCase()]
  const value = m === null ? NaN : Number(m[1]) * (unit ?? NaN)
  if (!(value > 0) || !Number.isFinite(value)) throw new OptionValueError(RATE_EXAMPLES)
  return value
}

export interface HostPort { host: string; port: number }

/** HOST:PORT, [v6]:PORT, or :PORT / PORT for every address. */
export function hostPort (text: string): HostPort {
  const m = /^(?:(?:\[([^\]]+)\]|([^:]*)):)?(\d{1,5})$/.exec(text.trim())
  const port = m === null ? NaN : Number(m[3])
  if (m === null || !(port >= 0 && port <= 65535)) throw new OptionValueError('HOST:PORT')
  const host = m[1] ?? (m[2] === undefined || m[2] === '' ? '0.0.0.0' : m[2])
  return { host, port }
}

/** http://HOST:PORT from a URL, HOST:PORT or a bare HOST; undefined when it is none of them. */
export function normalizeServer (text: string, defaultPort = DEFAULT_SERVER_PORT): string | undefined {
  const m = /^(?:(https?):\/\/)?(\[[^\]]+\]|[^/:]+)(?::(\d{1,5}))?\/?$/i.exec(text.trim())
  if (m === null || !HOST.test(m[2])) return undefined
  const port = m[3] === undefined ? defaultPort : Number(m[3])
  if (port < 1 || port > 65535) return undefined
  return `${m[1]?.toLowerCase() ?? 'http'}://${m[2]}:${port}`
}

/** An image server's address: a URL, HOST:PORT or a bare HOST (port 8470). */
export function serverUrl (text: string): string {
  const url = normalizeServer(text)
  if (url === undefined) throw new OptionValueError('http://HOST:PORT, HOST:PORT or HOST')
  return url
}

/** A base URL to write into torrents: http(s)://HOST[:PORT][/PATH], without a trailing slash. */
export function baseUrl (text: string): string {
  if (!/^https?:\/\/[^/\s]+(\/\S*)?$/i.test(text.trim())) throw new OptionValueError('http://HOST:PORT')
  return text.trim().replace(/\/+$/, '')
}
