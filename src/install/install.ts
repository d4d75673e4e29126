// A node's whole install, in order: plan -> torrents -> disk checks -> partition ->
// format -> mount -> download and extract (deploy) -> overrides -> fstab -> install.env
// -> boot loader -> post-install -> unmount -> finish. Everything that can be checked is checked before
// the first write to a disk; after it, any failure is reported as a failure with the
// step and the log, never as done.
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError, describeError } from '../errors.ts'
import type { Metainfo } from '../torrent/metainfo.ts'
import { loadTorrent } from '../deploy/torrent-source.ts'
import { UNAUTHENTICATED_WARNING } from '../deploy/trust.ts'
import { deployImage, type DeployRequest } from '../deploy/deploy.ts'
import type { DeployResult } from '../deploy/events.ts'
import { completeTarget } from '../deploy/extract.ts'
import type { InstallConfig } from './config.ts'
import { fetchPlan, type FetchedPlan } from './plan-client.ts'
import { resolveDisk, ensureUnused, SYSTEM_PATHS, type SystemPaths } from './disks.ts'
import { placePartitions, mib, type DiskLayout } from './disk-layout.ts'
import { writePartitionTable } from './partition.ts'
import { format, mountAll, unmountAll, type Formatted } from './filesystems.ts'
import { renderFstab } from './fstab.ts'
import { detectFirmware, planGrub, installGrub } from './bootloader.ts'
import { runPostInstall } from './post-install.ts'
import { prepareFinish, recordFinish } from './finish.ts'
import { writeInstallEnv } from './install-env.ts'
import { fetchOverrideTorrents, layOverrides, type LaidOverride } from './overrides-step.ts'
import { tail } from './command.ts'
import type { InstallEvent, InstallPhase, InstallSink } from './install-events.ts'

/** How much of the console log a failure report carries. */
export const REPORT_LOG_BYTES = 8192
const FS_WITH_FILES = new Set(['ext4', 'xfs', 'vfat'])

export interface InstallOptions {
  config: InstallConfig
  node: string
  macs: string[]
  /** where the new system is mounted while it is installed */
  target: string
  /** /init reads the finish action here */
  finishFile?: string
  /** /init's log, sent along with a failure */
  initLog?: string
  /** check plan, image and disks, then stop before writing anything */
  dryRun?: boolean
  emit: InstallSink
  signal?: AbortSignal
  paths?: SystemPaths
  /** seconds since the kernel started (default: /proc/uptime) */
  uptime?: () => Promise<number | undefined>
  /** plan request retries while the server is unreachable (default: plan-client's) */
  planRetry?: { attempts: number; retryMs: number }
  /** the installer's own kernel command line (its consoles carry over to a kexec) */
  kernelCmdline?: string
  /** the node's report credential, left to the installed system for its first-boot report */
  reportCredential?: () => Promise<string | undefined>
}

export interface InstallResult {
  image: string
  plan: string
  layouts: DiskLayout[]
  seconds: number
  finish: string
  deploy?: DeployResult
  /** each override laid over the image, in order, with its download's figures */
  overrides?: LaidOverride[]
}

export async function procUptime (): Promise<number | undefined> {
  try { return Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]) } catch { return undefined }
}

/** Recent console lines, for the failure report. */
class Journal {
  private text = ''
  add (line: string): void { this.text = tail(`${this.text}\n${line}`, REPORT_LOG_BYTES) }
  toString (): string { return this.text }
}

function describeLayout (l: DiskLayout): string {
  return `${l.device}: ${l.partitions.map(p => `${p.device} ${mib(p.bytes)} ${p.spec.fs}${p.spec.mount !== undefined ? ` ${p.spec.mount}` : ''}`).join(', ')}`
}

export async function install (opts: InstallOptions): Promise<InstallResult> {
  const started = Date.now()
  const journal = new Journal()
  const uptime = opts.uptime ?? procUptime
  let step: InstallPhase | 'download' = 'config'
  const emit = (event: InstallEvent): void => {
    if (event.type === 'phase') journal.add(`${event.phase}${event.detail !== undefined ? `: ${event.detail}` : ''}`)
    else if (event.type === 'warning') journal.add(`warning: ${event.message}`)
    opts.emit(event)
  }
  const phase = (p: InstallPhase, detail?: string): void => { step = p; emit({ type: 'phase', phase: p, detail }) }
  let mounted: string[] = []
  const trustedKey = opts.config.trustedKey
  try {
    if (trustedKey === undefined) emit({ type: 'warning', message: UNAUTHENTICATED_WARNING })
    const up = await uptime()
    phase('plan', `asking ${opts.config.server} for the plan of ${opts.node} (MAC ${opts.macs.join(', ') || 'none'})${up !== undefined ? `, ${up.toFixed(2)} s after kernel start` : ''}${trustedKey !== undefined ? `, trusting ${trustedKey}` : ''}`)
    const fetched = await fetchPlan(opts.config.server, { node: opts.node, macs: opts.macs, token: opts.config.token }, { signal: opts.signal, trustedKey, ...opts.planRetry })
    const { plan } = fetched
    const image = opts.config.image ?? plan.image
    const finishAction = opts.config.finish ?? plan.finish
    const secrets = Object.keys(plan.secrets).length
    emit({ type: 'phase', phase: 'plan', detail: `plan ${fetched.source}: image ${image}${plan.overrides.length > 0 ? ` + overrides ${plan.overrides.join(', ')}` : ''}, ${plan.disks.length} disk(s), ${plan.postInstall.length} post-install step(s)${secrets > 0 ? ` with ${secrets} secret(s)` : ''}, then ${finishAction}` })

    // Every torrent is checked before the first disk is touched: an untrusted one stops here.
    step = 'download'
    const metainfo = await loadTorrent({ server: opts.config.server, image }, { signal: opts.signal, trustedKey })
    const overrides = await fetchOverrideTorrents(opts.config.server, plan.overrides, { signal: opts.signal, trustedKey, planSource: fetched.source })

    phase('disks')
    const layouts = await checkDisks(fetched, opts.paths ?? SYSTEM_PATHS, [metainfo, ...overrides.map(o => o.metainfo)])
    for (const l of layouts) emit({ type: 'phase', phase: 'disks', detail: describeLayout(l) })
    if (opts.dryRun === true) {
      return { image, plan: fetched.source, layouts, seconds: (Date.now() - started) / 1000, finish: 'none (dry run)' }
    }

    phase('partition')
    for (const l of layouts) await writePartitionTable(l, opts.signal)
    phase('format')
    const formatted: Formatted[] = []
    for (const p of layouts.flatMap(l => l.partitions)) {
      formatted.push(await format(p, opts.signal))
      emit({ type: 'phase', phase: 'format', detail: `${p.device} ${p.spec.fs}${p.spec.fs !== 'none' ? ` UUID=${formatted[formatted.length - 1].uuid}` : ''}` })
    }
    phase('mount', opts.target)
    await mkdir(opts.target, { recursive: true })
    mounted = await mountAll(formatted, opts.target, opts.signal)

    // With overrides to come, the image's extraction keeps its "incomplete" marker and
    // the root's times until the last layer is in: a failure between never looks done.
    const layered = overrides.length > 0
    const deployed = await download(opts, metainfo, emit, s => { step = s }, layered ? { keepMarker: true } : undefined)
    let laid: LaidOverride[] | undefined
    if (layered) {
      step = 'overrides'
      laid = await layOverrides(overrides, { target: opts.target, settings: opts.config, emit, signal: opts.signal })
      await completeTarget(opts.target, deployed.rootTimes)
    }

    phase('fstab')
    await writeFstab(opts.target, formatted)
    const firmware = await detectFirmware((opts.paths ?? SYSTEM_PATHS).sys)
    await writeInstallEnv(opts.target, {
      SI_NODE: opts.node,
      SI_IMAGE: image,
      SI_SERVER: opts.config.server,
      SI_MONITOR: opts.config.monitor,
      SI_FIRMWARE: firmware,
      SI_INSTALLED_AT: new Date().toISOString()
    }, await opts.reportCredential?.())
    phase('bootloader')
    const rootDisk = layouts.find(l => l.partitions.some(p => p.spec.mount === '/'))?.device ?? layouts[0].device
    const grub = await planGrub(opts.target, plan.bootloader, formatted, rootDisk, firmware)
    emit({ type: 'phase', phase: 'bootloader', detail: `${firmware} firmware: ${grub.kind === 'none' ? `none: ${grub.reason}` : `grub (${grub.kind}): ${grub.commands.map(c => c.join(' ')).join('; ')}`}` })
    await installGrub(opts.target, grub, opts.signal)

    phase('post-install', `${plan.postInstall.length} step(s)`)
    await runPostInstall(opts.target, plan.postInstall, {
      env: { SI_NODE: opts.node, SI_IMAGE: image, SI_SERVER: opts.config.server, SI_ROOT_DISK: rootDisk },
      secrets: plan.secrets,
      onLine: (s, line) => { journal.add(`${s.name}: ${line}`); process.stderr.write(`si-agent: ${s.name}: ${line}\n`) },
      signal: opts.signal
    })

    phase('finish', finishAction)
    const decision = await prepareFinish(finishAction, opts.target, formatted, plan.kexecCmdline, opts.kernelCmdline ?? '', opts.signal)
    if (decision.note !== undefined) emit({ type: 'warning', message: decision.note })

    phase('unmount')
    const stuck = await unmountAll(mounted)
    mounted = []
    if (stuck.length > 0) throw new SiError('ERR_COMMAND_FAILED', `cannot unmount the installed file systems: ${stuck.join('; ')}`)
    await recordFinish(decision, opts.finishFile)

    const seconds = (Date.now() - started) / 1000
    const f = deployed.figures
    emit({
      type: 'installed',
      phase: 'installed',
      image,
      plan: fetched.source,
      seconds,
      uptimeSeconds: await uptime(),
      firmware,
      finish: decision.action,
      downloaded: f.downloaded,
      downloadedFromServer: f.downloadedFromServer,
      uploaded: f.uploaded,
      length: f.length
    })
    return { image, plan: fetched.source, layouts, seconds, finish: decision.action, deploy: deployed, overrides: laid }
  } catch (err) {
    if (mounted.length > 0) {
      const stuck = await unmountAll(mounted)
      if (stuck.length > 0) journal.add(`could not unmount: ${stuck.join('; ')}`)
    }
    let initLog = ''
    if (opts.initLog !== undefined) { try { initLog = await readFile(opts.initLog, 'utf8') } catch { /* none */ } }
    emit({
      type: 'error',
      phase: 'failed',
      code: err instanceof SiError ? err.code : 'ERR_INTERNAL',
      message: err instanceof SiError ? err.message : describeError(err),
      step,
      log: tail(`${initLog}\n${journal.toString()}`, REPORT_LOG_BYTES)
    })
    throw err
  }
}

async function checkDisks (fetched: FetchedPlan, paths: SystemPaths, images: Metainfo[]): Promise<DiskLayout[]> {
  const layouts: DiskLayout[] = []
  const taken: string[] = []
  for (const spec of fetched.plan.disks) {
    const disk = await resolveDisk(spec.device, paths, taken)
    if (taken.includes(disk.name)) throw new SiError('ERR_PLAN', `plan ${fetched.source}: disk ${spec.device} is ${disk.device}, already used by another entry`)
    taken.push(disk.name)
    await ensureUnused(paths, disk)
    layouts.push(placePartitions(spec, disk.device, disk.bytes, disk.sectorSize))
  }
  // Tar size is close to what the files take: far less room than that cannot work.
  const room = layouts.flatMap(l => l.partitions).filter(p => FS_WITH_FILES.has(p.spec.fs) && p.spec.mount !== undefined).reduce((n, p) => n + p.bytes, 0)
  const need = images.reduce((n, m) => n + m.length, 0)
  if (room < need) throw new SiError('ERR_DISK_TOO_SMALL', `the layout's file systems hold ${mib(room)}, the image needs about ${mib(need)}; nothing was written`)
  return layouts
}

async function download (opts: InstallOptions, metainfo: Metainfo, emit: InstallSink, setStep: (s: 'download') => void, extract?: DeployRequest['extract']): Promise<DeployResult> {
  setStep('download')
  return await deployImage({ metainfo, target: opts.target, settings: opts.config, extract, emit, signal: opts.signal })
}

async function writeFstab (root: string, parts: Formatted[]): Promise<void> {
  const path = join(root, 'etc/fstab')
  let existing = ''
  try { existing = await readFile(path, 'utf8') } catch { /* the image has none */ }
  await mkdir(join(root, 'etc'), { recursive: true })
  await writeFile(path, renderFstab(parts, existing), { mode: 0o644 })
}
