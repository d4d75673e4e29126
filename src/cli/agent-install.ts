// `si-agent install`: what /init runs on a node booted from the network. Also usable by
// hand (with --dry-run to see what a node would do without touching its disks).
import { readFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { SiError } from '../errors.ts'
import { parseArgs, stringFlag, noExtraPositionals } from './args.ts'
import { CONFIG_KEYS, reportTarget, resolveConfig, type ConfigKey } from '../install/cmdline.ts'
import { install } from '../install/install.ts'
import { installOutput } from '../install/install-events.ts'
import { localMacs } from '../install/plan-client.ts'

export const DEFAULT_TARGET = '/mnt/si-target'
export const DEFAULT_CMDLINE_FILE = '/proc/cmdline'
/** Host names that say nothing about which node this is. */
const ANONYMOUS_HOSTS = new Set(['', '(none)', 'localhost', 'localhost.localdomain'])

export const INSTALL_USAGE = `usage: si-agent install [options]

Installs this node from its plan: partitions and formats its disks, downloads the image
from the swarm into them, writes fstab, installs the boot loader, runs the post-install
steps, then leaves the finish action (reboot, poweroff, kexec, shell) for /init.

Configuration, a later source overriding an earlier one: the kernel command line
(si.* keys, or SystemImager's IMAGESERVER, IMAGENAME, BITTORRENT_STAGING,
BITTORRENT_SEED_WAIT, BITTORRENT_UPLOAD_MIN, BITTORRENT_POLLING_TIME, MONITOR_SERVER,
MONITOR_PORT), then the environment (SI_SERVER, SI_IMAGE, ...), then these flags:

  --server URL          image server, si.server (http://HOST:PORT, HOST:PORT or HOST)
  --image NAME[@N]      image instead of the plan's, si.image
  --node NAME           node name for the plan and reports, si.node (default: the
                        DHCP host name, else mac-<first MAC>)
  --staging DIR         where the tarball waits, si.staging (default: RAM if it fits)
  --seed-wait POLICY    none, upload-min[=KIB_PER_S] or swarm, si.seed_wait
  --upload-min KIB_S    threshold for upload-min, si.upload_min
  --seed-max SECONDS    longest seeding, si.seed_max
  --poll SECONDS        seed-wait check interval, si.poll
  --monitor URL         where reports go, si.monitor (default: the image server)
  --finish ACTION       reboot, poweroff, kexec or shell instead of the plan's, si.finish
  --peer-port PORT      BitTorrent port, si.peer_port
  --max-peers N         connections to other nodes, si.max_peers (default 80)
  --stall-seconds N     fail when no data arrives for this long, si.stall
  --target DIR          mount point of the new system (default ${DEFAULT_TARGET})
  --cmdline FILE        kernel command line to read (default ${DEFAULT_CMDLINE_FILE})
  --finish-file FILE    write the finish action there for /init
  --init-log FILE       /init's log, sent to the server with a failure
  --dry-run             fetch the plan and check the disks, then stop; writes nothing
  --no-report           do not report to the server
  --json                events as JSON lines on stdout
`

export function defaultNodeName (host: string, macs: string[]): string | undefined {
  const short = host.trim()
  if (!ANONYMOUS_HOSTS.has(short)) return short
  return macs[0] === undefined ? undefined : `mac-${macs[0].replace(/:/g, '')}`
}

export async function runInstallCommand (argv: string[]): Promise<number> {
  const configFlags = Object.values(CONFIG_KEYS).map(k => k.flag)
  const args = parseArgs(argv, {
    strings: [...configFlags, 'target', 'cmdline', 'finish-file', 'init-log'],
    booleans: ['json', 'dry-run'],
    onByDefault: ['report']
  })
  if (args.flags.help === true) { process.stdout.write(INSTALL_USAGE); return 0 }
  noExtraPositionals(args, 0, 'si-agent install --help')
  const cmdlineFile = stringFlag(args, 'cmdline') ?? DEFAULT_CMDLINE_FILE
  let cmdline = ''
  try { cmdline = await readFile(cmdlineFile, 'utf8') } catch (err) {
    if (stringFlag(args, 'cmdline') !== undefined) throw new SiError('ERR_CONFIG', `cannot read ${cmdlineFile}: ${(err as Error).message}`)
  }
  const flags: Partial<Record<ConfigKey, string>> = {}
  for (const [key, spec] of Object.entries(CONFIG_KEYS) as Array<[ConfigKey, { flag: string }]>) {
    const v = stringFlag(args, spec.flag)
    if (v !== undefined) flags[key] = v
  }
  const macs = localMacs()
  const json = args.flags.json === true
  const sources = { cmdline, env: process.env, flags }
  let resolved: ReturnType<typeof resolveConfig>
  try {
    resolved = resolveConfig(sources)
  } catch (err) {
    // Report the mistake to the server too when its address, at least, can be read.
    const target = reportTarget(sources)
    const output = installOutput({ json, node: target.node ?? defaultNodeName(hostname(), macs) ?? 'unknown', monitor: args.flags.report === true ? target.monitor : undefined })
    output.emit({ type: 'error', phase: 'failed', code: err instanceof SiError ? err.code : 'ERR_INTERNAL', message: (err as Error).message, step: 'config' })
    await output.flush()
    return 1
  }
  const { config, warnings } = resolved
  const node = config.node ?? defaultNodeName(hostname(), macs)
  if (node === undefined) {
    process.stderr.write('si-agent: error: no node name: no si.node, no DHCP host name and no network interface with a MAC address\n')
    return 1
  }
  const output = installOutput({ json, node, monitor: args.flags.report === true ? config.monitor : undefined })
  for (const w of warnings) output.emit({ type: 'warning', message: w })
  output.emit({ type: 'phase', phase: 'config', detail: `node ${node}, server ${config.server}${config.monitor !== config.server ? `, reports to ${config.monitor}` : ''} (${Object.entries(config.origins).map(([k, o]) => `${k} from ${o}`).join('; ') || 'defaults'})` })

  const abort = new AbortController()
  const onSignal = (): void => abort.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await install({
      config,
      node,
      macs,
      target: stringFlag(args, 'target') ?? DEFAULT_TARGET,
      finishFile: stringFlag(args, 'finish-file'),
      initLog: stringFlag(args, 'init-log'),
      dryRun: args.flags['dry-run'] === true,
      emit: output.emit,
      signal: abort.signal
    })
    return 0
  } catch {
    return 1 // install() has reported the error on the console and to the server
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await output.flush()
  }
}
