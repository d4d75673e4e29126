// The agent's install configuration, from three layers in this order, a later one
// overriding an earlier one: the kernel command line (si.* keys, and SystemImager's
// names as aliases for administrators migrating), the environment (SI_*), then flags.
// Every value is checked here, so a typo on a PXE line fails at once and says where.
import { SiError } from '../errors.ts'
import { isNodeName, NODE_NAME_RULE } from '../formats/node-name.ts'
import { FINISH_ACTIONS, type FinishAction } from '../formats/plan.ts'
import { parseSeedWait, type SeedWait } from '../deploy/seed-policy.ts'

/** si-server's default HTTP port, for IMAGESERVER=HOST as SystemImager wrote it. */
export const DEFAULT_SERVER_PORT = 8470
const FINISH_ALIASES: Record<string, FinishAction> = { halt: 'poweroff', stay: 'shell' }
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$/
/** Keys /init reads itself: accepted here without a warning. */
const INIT_KEYS = new Set(['si.on_error', 'si.netdev', 'si.dhcp_timeout', 'si.timeout', 'si.break'])

interface KeySpec { param: string; aliases: string[]; env: string; flag: string }

/** name -> where it may come from. */
export const CONFIG_KEYS = {
  server: { param: 'si.server', aliases: ['IMAGESERVER'], env: 'SI_SERVER', flag: 'server' },
  image: { param: 'si.image', aliases: ['IMAGENAME'], env: 'SI_IMAGE', flag: 'image' },
  node: { param: 'si.node', aliases: ['HOSTNAME'], env: 'SI_NODE', flag: 'node' },
  staging: { param: 'si.staging', aliases: ['BITTORRENT_STAGING'], env: 'SI_STAGING', flag: 'staging' },
  seedWait: { param: 'si.seed_wait', aliases: ['BITTORRENT_SEED_WAIT'], env: 'SI_SEED_WAIT', flag: 'seed-wait' },
  uploadMin: { param: 'si.upload_min', aliases: ['BITTORRENT_UPLOAD_MIN'], env: 'SI_UPLOAD_MIN', flag: 'upload-min' },
  seedMax: { param: 'si.seed_max', aliases: [], env: 'SI_SEED_MAX', flag: 'seed-max' },
  poll: { param: 'si.poll', aliases: ['BITTORRENT_POLLING_TIME'], env: 'SI_POLL', flag: 'poll' },
  monitor: { param: 'si.monitor', aliases: [], env: 'SI_MONITOR', flag: 'monitor' },
  monitorServer: { param: 'si.monitor_server', aliases: ['MONITOR_SERVER'], env: 'SI_MONITOR_SERVER', flag: 'monitor-server' },
  monitorPort: { param: 'si.monitor_port', aliases: ['MONITOR_PORT'], env: 'SI_MONITOR_PORT', flag: 'monitor-port' },
  finish: { param: 'si.finish', aliases: [], env: 'SI_FINISH', flag: 'finish' },
  peerPort: { param: 'si.peer_port', aliases: [], env: 'SI_PEER_PORT', flag: 'peer-port' },
  maxPeers: { param: 'si.max_peers', aliases: [], env: 'SI_MAX_PEERS', flag: 'max-peers' },
  stall: { param: 'si.stall', aliases: [], env: 'SI_STALL', flag: 'stall-seconds' }
} satisfies Record<string, KeySpec>
export type ConfigKey = keyof typeof CONFIG_KEYS

export interface InstallConfig {
  /** image server base URL, no trailing slash */
  server: string
  image?: string
  node?: string
  staging?: string
  seedWait?: SeedWait
  seedMaxSeconds?: number
  pollSeconds?: number
  /** where reports go (SystemImager's monitor); default the image server */
  monitor: string
  finish?: FinishAction
  peerPort?: number
  /** connection limit to other nodes */
  maxPeers?: number
  stallSeconds?: number
  /** where each value came from, for the log */
  origins: Partial<Record<ConfigKey, string>>
}

/** Words of a kernel command line; "key=a b" in double quotes is one word. */
export function splitCmdline (text: string): string[] {
  const words: string[] = []
  let word = ''
  let quoted = false
  let started = false
  for (const ch of text) {
    if (ch === '"') { quoted = !quoted; started = true; continue }
    if (!quoted && /\s/.test(ch)) {
      if (started) words.push(word)
      word = ''
      started = false
      continue
    }
    word += ch
    started = true
  }
  if (started) words.push(word)
  return words
}

/** key=value words of a kernel command line (the last one wins, as in the kernel). */
export function parseCmdline (text: string): Map<string, string> {
  const map = new Map<string, string>()
  for (const word of splitCmdline(text)) {
    const eq = word.indexOf('=')
    if (eq > 0) map.set(word.slice(0, eq), word.slice(eq + 1))
  }
  return map
}

export interface ConfigSources {
  cmdline?: string
  env?: NodeJS.ProcessEnv
  flags?: Partial<Record<ConfigKey, string>>
}

interface Raw { value: string; origin: string }

function collect (sources: ConfigSources): { raw: Partial<Record<ConfigKey, Raw>>; warnings: string[] } {
  const raw: Partial<Record<ConfigKey, Raw>> = {}
  const warnings: string[] = []
  const params = parseCmdline(sources.cmdline ?? '')
  const known = new Set<string>(INIT_KEYS)
  for (const [key, spec] of Object.entries(CONFIG_KEYS) as Array<[ConfigKey, KeySpec]>) {
    known.add(spec.param)
    // An si.* key wins over SystemImager's name for the same setting.
    for (const name of [...spec.aliases].reverse().concat(spec.param)) {
      const v = params.get(name)
      if (v !== undefined) raw[key] = { value: v, origin: `kernel command line ${name}` }
    }
    const e = sources.env?.[spec.env]
    if (e !== undefined && e !== '') raw[key] = { value: e, origin: `environment ${spec.env}` }
    const f = sources.flags?.[key]
    if (f !== undefined) raw[key] = { value: f, origin: `--${spec.flag}` }
  }
  for (const name of params.keys()) {
    if (name.startsWith('si.') && !known.has(name)) warnings.push(`kernel command line: unknown key ${name} ignored`)
  }
  return { raw, warnings }
}

function invalid (r: Raw, expected: string): never {
  throw new SiError('ERR_CONFIG', `${r.origin}=${JSON.stringify(r.value)}: expected ${expected}`)
}

function number (r: Raw | undefined, min: number, max: number, integer = false): number | undefined {
  if (r === undefined) return undefined
  const n = Number(r.value)
  if (r.value.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    invalid(r, `${integer ? 'an integer' : 'a number'} from ${min} to ${max}`)
  }
  return n
}

/** http://HOST:PORT from a URL, HOST:PORT or a bare HOST (SystemImager's IMAGESERVER=IP). */
export function normalizeServer (text: string, defaultPort = DEFAULT_SERVER_PORT): string | undefined {
  const m = /^(?:(https?):\/\/)?(\[[^\]]+\]|[^/:]+)(?::(\d{1,5}))?\/?$/.exec(text.trim())
  if (m === null || !HOST.test(m[2])) return undefined
  const port = m[3] === undefined ? defaultPort : Number(m[3])
  if (port < 1 || port > 65535) return undefined
  return `${m[1] ?? 'http'}://${m[2]}:${port}`
}

/**
 * Where to report when the configuration as a whole is invalid: the monitor or image
 * server if that much can be read, so the fleet view shows the node's mistake too.
 */
export function reportTarget (sources: ConfigSources): { monitor?: string; node?: string } {
  const { raw } = collect(sources)
  const node = raw.node !== undefined && isNodeName(raw.node.value) ? raw.node.value : undefined
  for (const r of [raw.monitor, raw.server]) {
    const url = r === undefined ? undefined : normalizeServer(r.value)
    if (url !== undefined) return { monitor: url, node }
  }
  return { node }
}

export function resolveConfig (sources: ConfigSources): { config: InstallConfig; warnings: string[] } {
  const { raw, warnings } = collect(sources)
  const origins: InstallConfig['origins'] = {}
  for (const [k, r] of Object.entries(raw) as Array<[ConfigKey, Raw]>) origins[k] = r.origin
  if (raw.server === undefined) {
    throw new SiError('ERR_CONFIG', 'no image server: give si.server=http://HOST:PORT (or IMAGESERVER=HOST) on the kernel command line, SI_SERVER in the environment, or --server')
  }
  const server = normalizeServer(raw.server.value) ?? invalid(raw.server, 'http://HOST:PORT, HOST:PORT or HOST')

  let seedWait: SeedWait | undefined
  if (raw.seedWait !== undefined) {
    try { seedWait = parseSeedWait(raw.seedWait.value.toLowerCase()) } catch { invalid(raw.seedWait, 'none, swarm, upload-min[=KIB_PER_S], y or n') }
  }
  const uploadMin = number(raw.uploadMin, 0, 10_000_000)
  if (uploadMin !== undefined && (seedWait === undefined || seedWait.kind === 'upload-min')) seedWait = { kind: 'upload-min', kibPerSecond: uploadMin }

  let monitor = server
  if (raw.monitor !== undefined) monitor = normalizeServer(raw.monitor.value) ?? invalid(raw.monitor, 'http://HOST:PORT')
  else if (raw.monitorServer !== undefined) {
    const port = number(raw.monitorPort, 1, 65535, true) ?? DEFAULT_SERVER_PORT
    monitor = normalizeServer(raw.monitorServer.value, port) ?? invalid(raw.monitorServer, 'a host name or address')
  }

  let finish: FinishAction | undefined
  if (raw.finish !== undefined) {
    const word = raw.finish.value.toLowerCase()
    finish = FINISH_ALIASES[word] ?? FINISH_ACTIONS.find(a => a === word) ?? invalid(raw.finish, FINISH_ACTIONS.join(', '))
  }
  if (raw.node !== undefined && !isNodeName(raw.node.value)) invalid(raw.node, NODE_NAME_RULE)
  if (raw.image !== undefined && raw.image.value.trim() === '') invalid(raw.image, 'NAME or NAME@VERSION')

  return {
    config: {
      server,
      image: raw.image?.value,
      node: raw.node?.value,
      staging: raw.staging?.value,
      seedWait,
      seedMaxSeconds: number(raw.seedMax, 0, 86_400),
      pollSeconds: number(raw.poll, 0.1, 3600),
      monitor,
      finish,
      peerPort: number(raw.peerPort, 0, 65535, true),
      maxPeers: number(raw.maxPeers, 1, 10_000, true),
      stallSeconds: number(raw.stall, 1, 86_400),
      origins
    },
    warnings
  }
}
