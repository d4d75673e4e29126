// `si-agent install`: what /init runs on a node booted from the network. Also usable by
// hand (with --dry-run to see what a node would do without touching its disks).
import { readFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { SiError } from '../errors.ts'
import { INSTALL_OPTIONS, DEFAULT_CMDLINE_FILE, reportTarget, resolveConfig } from '../install/config.ts'
import { install } from '../install/install.ts'
import { installOutput } from '../install/install-events.ts'
import { localMacs } from '../install/plan-client.ts'
import { readBakedKey } from '../deploy/trust.ts'
import { givenFlags, noExtraPositionals } from '../config/command-line.ts'
import { commandHelp } from '../config/help.ts'
import { onTermination } from './signals.ts'

/** Host names that say nothing about which node this is. */
const ANONYMOUS_HOSTS = new Set(['', '(none)', 'localhost', 'localhost.localdomain'])

export const INSTALL_HELP = commandHelp(['si-agent install [options]'], INSTALL_OPTIONS, {
  params: true,
  intro: `Installs this node from its plan: partitions and formats its disks, downloads the image
from the swarm into them, writes fstab, installs the boot loader, runs the post-install
steps, then leaves the finish action (reboot, poweroff, kexec, shell) for /init.

Configuration, a later source overriding an earlier one: the kernel command line (the
si.* key or SystemImager's name in brackets), the environment (SI_SERVER, SI_IMAGE, ...:
SI_ and the key in capitals), then these flags:`
})

export function defaultNodeName (host: string, macs: string[]): string | undefined {
  const short = host.trim()
  if (!ANONYMOUS_HOSTS.has(short)) return short
  return macs[0] === undefined ? undefined : `mac-${macs[0].replace(/:/g, '')}`
}

export async function runInstallCommand (argv: string[]): Promise<number> {
  const given = givenFlags(argv, INSTALL_OPTIONS)
  if (given.help) { process.stdout.write(INSTALL_HELP); return 0 }
  noExtraPositionals(given.positional, 0, INSTALL_HELP)
  const cmdlineFlag = given.flags.cmdline
  const cmdlineFile = typeof cmdlineFlag === 'string' ? cmdlineFlag : DEFAULT_CMDLINE_FILE
  let cmdline = ''
  try { cmdline = await readFile(cmdlineFile, 'utf8') } catch (err) {
    if (cmdlineFlag !== undefined) throw new SiError('ERR_CONFIG', `cannot read ${cmdlineFile}: ${(err as Error).message}`)
  }
  const macs = localMacs()
  const json = given.flags.json === true
  const report = given.flags.report !== false
  const sources = { cmdline, env: process.env, flags: given.flags }
  let resolved: ReturnType<typeof resolveConfig>
  try {
    resolved = resolveConfig({ ...sources, bakedTrustedKey: await readBakedKey() })
  } catch (err) {
    // Report the mistake to the server too when its address, at least, can be read.
    const target = reportTarget(sources)
    const output = installOutput({ json, node: target.node ?? defaultNodeName(hostname(), macs) ?? 'unknown', monitor: report ? target.monitor : undefined, macs, token: target.token })
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
  const output = installOutput({ json: config.json, node, monitor: config.report ? config.monitor : undefined, macs, token: config.token })
  for (const w of warnings) output.emit({ type: 'warning', message: w })
  output.emit({ type: 'phase', phase: 'config', detail: `node ${node}, server ${config.server}${config.monitor !== config.server ? `, reports to ${config.monitor}` : ''} (${Object.entries(config.origins).map(([k, o]) => `${k} from ${o}`).join('; ') || 'defaults'})` })

  const termination = onTermination()
  try {
    await install({
      config,
      node,
      macs,
      target: config.target,
      finishFile: config.finishFile,
      initLog: config.initLog,
      dryRun: config.dryRun,
      kernelCmdline: cmdline,
      reportCredential: output.credential,
      emit: output.emit,
      signal: termination.signal
    })
    return 0
  } catch {
    return 1 // install() has reported the error on the console and to the server
  } finally {
    termination.dispose()
    await output.flush()
  }
}
