// What a node tells the image server about its install (POST /api/nodes/NODE/events),
// shared by the agent that sends it and the server that checks it: the fleet phases,
// the fields, and the bound on each, so the agent never sends what the server refuses.
//
// A report is a snapshot of the node's state, sent at each phase change and every
// few seconds (the server says how often in its reply), not a stream of events.
// Plain events ({"type":"phase","phase":"booted"}, or an older agent's events) are
// reports too: every field is optional but the phase.
import { SiError } from '../errors.ts'

/** The phases an administrator watches, in the order a node goes through them. */
export const FLEET_PHASES = ['booting', 'planning', 'tools', 'downloading', 'extracting', 'finalizing', 'seeding', 'done', 'failed', 'booted'] as const
export type FleetPhase = typeof FLEET_PHASES[number]

/** The agent's own steps (deploy and install events) as the fleet shows them. */
const STEP_PHASES: Record<string, FleetPhase> = {
  config: 'booting',
  network: 'booting',
  plan: 'planning',
  torrent: 'planning',
  disks: 'planning',
  partition: 'planning',
  format: 'planning',
  mount: 'planning',
  tools: 'tools',
  staging: 'downloading',
  download: 'downloading',
  overrides: 'finalizing',
  fstab: 'finalizing',
  bootloader: 'finalizing',
  'post-install': 'finalizing',
  unmount: 'finalizing',
  finish: 'finalizing',
  installed: 'done'
}

export const REPORT_LIMITS = {
  /** the whole body as posted */
  bodyBytes: 16 * 1024,
  /** console log tail sent with a failure */
  logBytes: 8 * 1024,
  /** detail of a step, a warning, an image name */
  textChars: 400,
  /** an error message */
  errorChars: 2000,
  listItems: 32
} as const

export interface NodeIdentity { hostname?: string; macs: string[]; addresses: string[] }
export interface DiskSummary { name: string; bytes: number }
export interface HardwareSummary { cpus: number; cpuModel?: string; memoryBytes: number; disks: DiskSummary[] }
export interface ReportedError { code: string; message: string; step?: string }
/** The system a report comes from: the installer's (finish, firmware it booted with) or the installed one's first boot. */
export interface SystemFacts {
  firmware?: Firmware
  /** the running kernel's release (uname -r) */
  kernel?: string
  /** how the installer ends: reboot, kexec, poweroff, shell */
  finish?: string
  /** seconds since this kernel started */
  uptimeSeconds?: number
}
export const FIRMWARES = ['bios', 'uefi'] as const
export type Firmware = typeof FIRMWARES[number]

export interface NodeReport {
  phase: FleetPhase
  /** the agent's own step within the phase: partition, download, post-install... */
  step?: string
  detail?: string
  /** one install or deploy from start to end: the server's history keeps one row per run */
  run?: string
  identity?: NodeIdentity
  hardware?: HardwareSummary
  /** NAME@VERSION, or the torrent's name when the agent does not know the version */
  image?: string
  infoHash?: string
  /** verified fraction of the image, 0 to 1 */
  progress?: number
  /** bytes per second */
  downloadRate?: number
  uploadRate?: number
  bytesFromServer?: number
  bytesFromPeers?: number
  /** bytes sent to other nodes */
  uploaded?: number
  peers?: number
  warning?: string
  error?: ReportedError
  system?: SystemFacts
  /** the tail of the console log, with a failure */
  log?: string
}

/** The fleet phase of an agent step, or of a fleet phase itself; undefined for anything else. */
export function fleetPhaseOf (step: string): FleetPhase | undefined {
  return (FLEET_PHASES as readonly string[]).includes(step) ? step as FleetPhase : STEP_PHASES[step]
}

export function isTerminalPhase (phase: FleetPhase): boolean {
  return phase === 'done' || phase === 'failed' || phase === 'booted'
}

/** The last `bytes` of a text (whole UTF-8 characters), for logs. */
export function tailBytes (text: string, bytes: number): string {
  const buf = Buffer.from(text, 'utf8')
  if (buf.length <= bytes) return text
  return buf.subarray(buf.length - bytes).toString('utf8').replace(/^\uFFFD+/, '')
}

/** A text cut to `chars`, for the fields the server bounds. */
export function clip (text: string, chars: number = REPORT_LIMITS.textChars): string {
  return text.length <= chars ? text : text.slice(0, chars - 1) + '…'
}

const CODE = /^[A-Z][A-Z0-9_]{0,63}$/
const INFO_HASH = /^[0-9a-f]{40}$/
const RUN_ID = /^[A-Za-z0-9_-]{1,64}$/
const MAX_BYTES_FIGURE = 2 ** 53 - 1
const FIRMWARE = new RegExp(`^(${FIRMWARES.join('|')})$`)
const WORD = /^[A-Za-z0-9._+-]{1,64}$/
/** ten years of uptime */
const MAX_UPTIME_SECONDS = 10 * 365 * 24 * 3600

function invalid (field: string, expected: string): SiError {
  return new SiError('ERR_INVALID_REPORT', `field "${field}": expected ${expected}`)
}

/** Reads one report field by field; a field of the wrong kind is refused, naming it. */
class FieldReader {
  constructor (private readonly obj: Record<string, unknown>, private readonly prefix = '') {}

  private name (key: string): string { return this.prefix + key }

  string (key: string, max: number, pattern?: RegExp): string | undefined {
    const v = this.obj[key]
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'string' || v.length > max || (pattern !== undefined && !pattern.test(v))) throw invalid(this.name(key), `a string of at most ${max} characters${pattern !== undefined ? ` matching ${String(pattern)}` : ''}`)
    return v
  }

  number (key: string, min: number, max: number): number | undefined {
    const v = this.obj[key]
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw invalid(this.name(key), `a number from ${min} to ${max}`)
    return v
  }

  strings (key: string, max: number): string[] | undefined {
    const v = this.obj[key]
    if (v === undefined || v === null) return undefined
    if (!Array.isArray(v) || v.length > REPORT_LIMITS.listItems || v.some(s => typeof s !== 'string' || s.length > max)) throw invalid(this.name(key), `a list of at most ${REPORT_LIMITS.listItems} strings`)
    return v as string[]
  }

  object (key: string): FieldReader | undefined {
    const v = this.obj[key]
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'object' || Array.isArray(v)) throw invalid(this.name(key), 'an object')
    return new FieldReader(v as Record<string, unknown>, `${this.name(key)}.`)
  }

  objects (key: string): FieldReader[] | undefined {
    const v = this.obj[key]
    if (v === undefined || v === null) return undefined
    if (!Array.isArray(v) || v.length > REPORT_LIMITS.listItems) throw invalid(this.name(key), `a list of at most ${REPORT_LIMITS.listItems} objects`)
    return v.map((item, i) => {
      if (typeof item !== 'object' || item === null || Array.isArray(item)) throw invalid(`${this.name(key)}[${i}]`, 'an object')
      return new FieldReader(item as Record<string, unknown>, `${this.name(key)}[${i}].`)
    })
  }
}

/** Drops the keys whose value is undefined, so stored reports carry only what was said. */
function defined<T extends object> (obj: T): T {
  for (const k of Object.keys(obj) as Array<keyof T>) if (obj[k] === undefined) Reflect.deleteProperty(obj, k)
  return obj
}

/**
 * Checks a posted report. `phase` is a fleet phase or an agent step (mapped to its
 * phase); an older agent's error event carries code and message at the top level.
 */
export function parseNodeReport (json: unknown): NodeReport {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new SiError('ERR_INVALID_REPORT', 'a report must be a JSON object')
  const r = new FieldReader(json as Record<string, unknown>)
  const t = REPORT_LIMITS.textChars
  const said = r.string('phase', 64)
  const phase = said === undefined ? undefined : fleetPhaseOf(said)
  if (phase === undefined) throw invalid('phase', `one of ${FLEET_PHASES.join(', ')} (or an agent step)`)
  const id = r.object('identity')
  const hw = r.object('hardware')
  const err = r.object('error')
  const sys = r.object('system')
  const legacyCode = err === undefined ? r.string('code', 64, CODE) : undefined
  const error: ReportedError | undefined = err !== undefined
    ? { code: err.string('code', 64, CODE) ?? 'ERR_INTERNAL', message: err.string('message', REPORT_LIMITS.errorChars) ?? '', step: err.string('step', 64) }
    : legacyCode !== undefined ? { code: legacyCode, message: r.string('message', REPORT_LIMITS.errorChars) ?? '', step: r.string('step', 64) } : undefined
  return defined({
    phase,
    step: r.string('step', 64) ?? (said !== phase ? said : undefined),
    detail: r.string('detail', t),
    run: r.string('run', 64, RUN_ID),
    identity: id === undefined ? undefined : defined({ hostname: id.string('hostname', 255), macs: id.strings('macs', 64) ?? [], addresses: id.strings('addresses', 64) ?? [] }),
    hardware: hw === undefined
      ? undefined
      : defined({
        cpus: hw.number('cpus', 0, 1_000_000) ?? 0,
        cpuModel: hw.string('cpuModel', t),
        memoryBytes: hw.number('memoryBytes', 0, MAX_BYTES_FIGURE) ?? 0,
        disks: (hw.objects('disks') ?? []).map(d => ({ name: d.string('name', 64) ?? '?', bytes: d.number('bytes', 0, MAX_BYTES_FIGURE) ?? 0 }))
      }),
    image: r.string('image', t),
    infoHash: r.string('infoHash', 40, INFO_HASH),
    progress: r.number('progress', 0, 1),
    downloadRate: r.number('downloadRate', 0, MAX_BYTES_FIGURE),
    uploadRate: r.number('uploadRate', 0, MAX_BYTES_FIGURE),
    bytesFromServer: r.number('bytesFromServer', 0, MAX_BYTES_FIGURE),
    bytesFromPeers: r.number('bytesFromPeers', 0, MAX_BYTES_FIGURE),
    uploaded: r.number('uploaded', 0, MAX_BYTES_FIGURE),
    peers: r.number('peers', 0, 1_000_000),
    warning: r.string('warning', t),
    error,
    system: sys === undefined
      ? undefined
      : defined({
        firmware: sys.string('firmware', 8, FIRMWARE) as Firmware | undefined,
        kernel: sys.string('kernel', 64, WORD),
        finish: sys.string('finish', 64, WORD),
        uptimeSeconds: sys.number('uptimeSeconds', 0, MAX_UPTIME_SECONDS)
      }),
    log: r.string('log', REPORT_LIMITS.logBytes)
  })
}

/** The server's answer to a report: how long the node should wait before its next progress report. */
export interface ReportAnswer { intervalSeconds: number }

export function parseReportAnswer (body: string): ReportAnswer | undefined {
  try {
    const v = (JSON.parse(body) as { intervalSeconds?: unknown }).intervalSeconds
    return typeof v === 'number' && Number.isFinite(v) && v > 0 ? { intervalSeconds: v } : undefined
  } catch { return undefined }
}
