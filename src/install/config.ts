// `si-agent install`'s settings, from three layers, a later one overriding an earlier one:
// the kernel command line (si.* keys, and SystemImager's names as aliases for people
// migrating), the environment (SI_*), then flags. Every value goes through its option's
// parser, so a typo on a PXE line fails at once and says where it came from.
import { SiError } from '../errors.ts'
import { option, readOptions, switchOption, optionParams, OptionValueError, type OptionSources, type Values } from '../config/options.ts'
import { DEFAULT_SERVER_PORT, integer, nonEmpty, normalizeServer, oneOf, serverUrl } from '../config/values.ts'
import { DOWNLOAD_OPTIONS, OUTPUT_OPTIONS, TRUST_OPTIONS, effectiveSeedWait } from '../deploy/config.ts'
import { effectiveTrustedKey } from '../deploy/trust.ts'
import { FINISH_ACTIONS, type FinishAction } from '../formats/plan.ts'
import { isNodeName, NODE_NAME_RULE } from '../formats/node-name.ts'
import { parseImageRef } from '../formats/image-ref.ts'
import { TOOL_BUNDLE_NAME_FILE } from '../formats/tool-bundle.ts'
import { parseCmdline } from './cmdline.ts'

export const DEFAULT_TARGET = '/mnt/si-target'
export const DEFAULT_CMDLINE_FILE = '/proc/cmdline'
/** Keys /init reads itself (initrd/init's header lists them): accepted here without a warning. */
export const INIT_KEYS = ['si.on_error', 'si.netdev', 'si.ip', 'si.gw', 'si.dns', 'si.dhcp_timeout', 'si.timeout', 'si.break']

function nodeName (text: string): string {
  if (!isNodeName(text)) throw new OptionValueError(NODE_NAME_RULE)
  return text
}

/** `none`, or the image holding the tool bundle. */
function toolBundle (text: string): string {
  if (text === 'none') return text
  try { parseImageRef(text) } catch (err) { throw new OptionValueError(`none or an image NAME[@N]: ${(err as Error).message}`) }
  return text
}

export const INSTALL_OPTIONS = {
  server: option({ flag: 'server', arg: 'URL', param: 'si.server', aliases: ['IMAGESERVER'], env: 'SI_SERVER', help: 'image server: http://HOST:PORT, HOST:PORT or HOST', parse: serverUrl }),
  image: option({ flag: 'image', arg: 'NAME[@N]', param: 'si.image', aliases: ['IMAGENAME'], env: 'SI_IMAGE', help: 'image instead of the plan\'s', parse: nonEmpty('NAME or NAME@VERSION') }),
  node: option({ flag: 'node', arg: 'NAME', param: 'si.node', aliases: ['HOSTNAME'], env: 'SI_NODE', help: 'node name for the plan and reports', defaultText: 'the DHCP host name, else mac-<first MAC>', parse: nodeName }),
  monitor: option({ flag: 'monitor', arg: 'URL', param: 'si.monitor', env: 'SI_MONITOR', help: 'where reports go', defaultText: 'the image server', parse: serverUrl }),
  monitorServer: option({ flag: 'monitor-server', arg: 'HOST', param: 'si.monitor_server', aliases: ['MONITOR_SERVER'], env: 'SI_MONITOR_SERVER', help: 'where reports go, as SystemImager named it (with --monitor-port)', parse: nonEmpty('a host name or address') }),
  monitorPort: option({ flag: 'monitor-port', arg: 'PORT', param: 'si.monitor_port', aliases: ['MONITOR_PORT'], env: 'SI_MONITOR_PORT', help: 'port of --monitor-server', default: DEFAULT_SERVER_PORT, parse: integer(1, 65535) }),
  finish: option({ flag: 'finish', arg: 'ACTION', param: 'si.finish', env: 'SI_FINISH', help: 'reboot, poweroff, kexec or shell instead of the plan\'s', parse: oneOf<FinishAction>(FINISH_ACTIONS, { halt: 'poweroff', stay: 'shell' }) }),
  tools: option({ flag: 'tools', arg: 'NAME[@N]|none', param: 'si.tools', env: 'SI_TOOLS', help: 'tool bundle (disk tools, storage and file-system modules) fetched through the swarm before a disk is touched', defaultText: `the one ${TOOL_BUNDLE_NAME_FILE} names (an initramfs built with make initrd), else none`, parse: toolBundle }),
  ...TRUST_OPTIONS,
  ...DOWNLOAD_OPTIONS,
  target: option({ flag: 'target', arg: 'DIR', help: 'mount point of the new system', default: DEFAULT_TARGET, parse: nonEmpty('a directory') }),
  cmdline: option({ flag: 'cmdline', arg: 'FILE', help: 'kernel command line to read', default: DEFAULT_CMDLINE_FILE, parse: nonEmpty('a file') }),
  finishFile: option({ flag: 'finish-file', arg: 'FILE', help: 'write the finish action there for /init', parse: nonEmpty('a file') }),
  initLog: option({ flag: 'init-log', arg: 'FILE', help: '/init\'s log, sent to the server with a failure', parse: nonEmpty('a file') }),
  dryRun: switchOption({ flag: 'dry-run', help: 'fetch the plan and check the disks, then stop; writes nothing' }),
  ...OUTPUT_OPTIONS
}

export type InstallSettings = Values<typeof INSTALL_OPTIONS>

export interface InstallConfig extends Omit<InstallSettings, 'server' | 'monitor'> {
  /** image server base URL */
  server: string
  /** where reports go (SystemImager's monitor); the image server unless set */
  monitor: string
  /** where each given value came from, for the log */
  origins: Partial<Record<keyof InstallSettings, string>>
}

export interface InstallSources {
  /** the kernel command line's text */
  cmdline?: string
  env?: NodeJS.ProcessEnv
  /** flag name (without --) to its value */
  flags?: OptionSources['flags']
  /** the key baked into the initramfs (deploy/trust.ts readBakedKey) */
  bakedTrustedKey?: string
}

function sourcesOf (s: InstallSources): OptionSources {
  return { cmdline: parseCmdline(s.cmdline ?? ''), env: s.env, flags: s.flags }
}

function unknownKeyWarnings (cmdline: ReadonlyMap<string, string>): string[] {
  const known = new Set([...optionParams(INSTALL_OPTIONS), ...INIT_KEYS])
  return [...cmdline.keys()].filter(k => k.startsWith('si.') && !known.has(k)).map(k => `kernel command line: unknown key ${k} ignored`)
}

function monitorOf (v: Pick<InstallSettings, 'monitor' | 'monitorServer' | 'monitorPort'>, server: string): string {
  if (v.monitor !== undefined) return v.monitor
  if (v.monitorServer === undefined) return server
  const url = normalizeServer(v.monitorServer, v.monitorPort)
  if (url === undefined) throw new SiError('ERR_CONFIG', `monitor server ${JSON.stringify(v.monitorServer)}: expected a host name or address`)
  return url
}

export function resolveConfig (sources: InstallSources): { config: InstallConfig; warnings: string[] } {
  const s = sourcesOf(sources)
  const { values, origins } = readOptions(INSTALL_OPTIONS, s)
  if (values.server === undefined) {
    throw new SiError('ERR_CONFIG', 'no image server: give si.server=http://HOST:PORT (or IMAGESERVER=HOST) on the kernel command line, SI_SERVER in the environment, or --server')
  }
  // The policy in force: --seed-wait with the threshold of --upload-min.
  const trustedKey = effectiveTrustedKey(values.trustedKey, origins.trustedKey, sources.bakedTrustedKey)
  const config: InstallConfig = { ...values, server: values.server, monitor: monitorOf(values, values.server), seedWait: effectiveSeedWait(values), trustedKey, origins }
  return { config, warnings: unknownKeyWarnings(s.cmdline ?? new Map()) }
}

/**
 * Where to report when the configuration as a whole is invalid: the monitor or image
 * server if that much can be read, so the fleet view shows the node's mistake too.
 */
export function reportTarget (sources: InstallSources): { monitor?: string; node?: string; token?: string } {
  const s = sourcesOf(sources)
  const read = <K extends 'server' | 'monitor' | 'node' | 'token'>(key: K): InstallSettings[K] | undefined => {
    try { return readOptions({ [key]: INSTALL_OPTIONS[key] } as Pick<typeof INSTALL_OPTIONS, K>, s).values[key] } catch { return undefined }
  }
  const node = read('node')
  const token = read('token')
  const monitor = read('monitor') ?? read('server')
  return { ...(monitor !== undefined ? { monitor } : {}), node, ...(token !== undefined ? { token } : {}) }
}
