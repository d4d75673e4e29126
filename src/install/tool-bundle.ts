// The tool bundle step. The initramfs carries only what reaching the network and
// running the agent needs: every node pulls it from the server by unicast, so each MiB
// in it costs the server N MiB. The disk and file-system tools and the storage and
// file-system modules come as an image of their own (si-tools-KERNEL, made by `make
// initrd`), fetched through the swarm like any image: its torrent checked against the
// trusted key, every piece verified, unpacked into a tmpfs (/run), linked into the
// running system (so the tools are on PATH and modprobe sees the modules with the
// initramfs's own), its modules loaded, all before the first disk is looked at. While
// the node installs, it keeps seeding the bundle to the nodes that boot after it, until
// its image's seeding ends.
import { lstat, mkdir, readdir, readFile, rm, stat, symlink, unlink } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { SiError, describeError, isSiError } from '../errors.ts'
import type { Metainfo } from '../torrent/metainfo.ts'
import { loadTorrent } from '../deploy/torrent-source.ts'
import { deployImage } from '../deploy/deploy.ts'
import { removeDeadStaging, stagingDirs } from '../deploy/staging.ts'
import { besideTheImage, type DownloadSettings } from '../deploy/config.ts'
import { describeSources, type EventSink, type ProgressFigures } from '../deploy/events.ts'
import { COLDPLUG_COMMAND, TOOL_BUNDLE_MODULES_FILE, TOOL_BUNDLE_NAME_FILE } from '../formats/tool-bundle.ts'
import { runCommand } from './command.ts'
import { hasFile } from './chroot.ts'
import { waitForDisks, type SystemPaths } from './disks.ts'
import { nestedPhaseDetail, type InstallSink } from './install-events.ts'

/** Where the bundle is unpacked: /run is a tmpfs in the initramfs. */
export const DEFAULT_TOOLS_DIR = '/run/si/tools'
/** Loading every present device's driver: a few passes of modprobe. */
const COLDPLUG_TIMEOUT_MS = 120_000
/** Disks appear a moment after their drivers load (SCSI and NVMe probe in the background). */
const DISK_WAIT_MS = 10_000
/** What the download leaves in its target besides the bundle (staging, the incomplete marker): never linked. */
const DOWNLOAD_PRIVATE_PREFIX = '.si-'

export interface ToolBundleSetup {
  /** where the bundle is unpacked */
  dir: string
  /** the system its files are linked into */
  root: string
  /** the initramfs's record of the bundle built with it */
  nameFile: string
}

export const DEFAULT_TOOL_BUNDLE_SETUP: Readonly<ToolBundleSetup> = Object.freeze({ dir: DEFAULT_TOOLS_DIR, root: '/', nameFile: TOOL_BUNDLE_NAME_FILE })

/**
 * The bundle to fetch: the setting (`none`: no bundle), else the one the initramfs was
 * built with; undefined outside such an initramfs (built with the tools inside, or not
 * an initramfs at all: the tools are already there).
 */
export async function toolBundleRef (setting: string | undefined, nameFile: string): Promise<string | undefined> {
  if (setting === 'none') return undefined
  if (setting !== undefined) return setting
  try {
    const name = (await readFile(nameFile, 'utf8')).trim()
    return name === '' ? undefined : name
  } catch { return undefined }
}

/** The bundle's torrent, checked like an image's; a server without it is ERR_TOOL_BUNDLE, naming it. */
export async function loadToolBundleTorrent (server: string, ref: string, opts: { signal?: AbortSignal; trustedKey?: string }): Promise<Metainfo> {
  try {
    return await loadTorrent({ server, image: ref }, opts)
  } catch (err) {
    if (!isSiError(err, 'ERR_IMAGE_NOT_FOUND') && !isSiError(err, 'ERR_IMAGE_REMOVED')) throw err
    throw new SiError('ERR_TOOL_BUNDLE', `no tool bundle ${ref} on ${server} (${err.message}): this initramfs has no disk tools and expects that bundle, built with it; add it on the server (si-server image add ${ref.split('@')[0]} --from dist/tools, after make initrd) or build the initramfs with the tools inside (make initrd TOOLS=inside)`, { cause: err })
  }
}

/**
 * Links every file of the unpacked bundle into `root`: a symbolic link in place of
 * whatever was there (busybox's applet links give way to the real tools, and the
 * bundle's module index, which knows the initramfs's modules too, replaces the
 * initramfs's); directories are created where missing.
 */
export async function linkTree (from: string, root: string): Promise<{ linked: number; replaced: number }> {
  const entries = await readdir(from, { recursive: true, withFileTypes: true })
  // Parents sort before their children.
  const paths = entries
    .map(e => ({ rel: relative(from, join(e.parentPath, e.name)), dir: e.isDirectory() }))
    .filter(p => !p.rel.startsWith(DOWNLOAD_PRIVATE_PREFIX))
    .sort((a, b) => a.rel < b.rel ? -1 : 1)
  let linked = 0
  let replaced = 0
  for (const { rel, dir } of paths) {
    const into = join(root, rel)
    if (dir) {
      try {
        if (!(await stat(into)).isDirectory()) throw new SiError('ERR_TOOL_BUNDLE', `${into} is not a directory: the bundle's ${rel}/ cannot go there`)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        await mkdir(into)
      }
      continue
    }
    try {
      if ((await lstat(into)).isDirectory()) throw new SiError('ERR_TOOL_BUNDLE', `${into} is a directory: the bundle's file ${rel} cannot replace it`)
      await unlink(into)
      replaced++
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    await symlink(join(from, rel), into)
    linked++
  }
  return { linked, replaced }
}

/** The bundle's modules, then every present device's driver: the disks appear. */
async function loadModules (root: string, signal?: AbortSignal): Promise<string> {
  if (!await hasFile(root, COLDPLUG_COMMAND)) return `no ${COLDPLUG_COMMAND} here: modules left as they are`
  await runCommand(join(root, COLDPLUG_COMMAND), [join(root, TOOL_BUNDLE_MODULES_FILE)], { signal, timeoutMs: COLDPLUG_TIMEOUT_MS })
  let modules = ''
  try { modules = (await readFile('/proc/modules', 'utf8')).split('\n').map(l => l.split(' ')[0]).filter(m => m !== '').join(' ') } catch { /* no /proc */ }
  return `modules loaded: ${modules || 'none'}`
}

export interface RunningBundle {
  /** what was fetched, linked and loaded, for the log */
  summary: string
  /** leaves the bundle's swarm; resolves once its sockets are closed */
  stop: () => Promise<void>
}

export interface StartBundleOptions {
  ref: string
  metainfo: Metainfo
  settings: DownloadSettings
  setup: ToolBundleSetup
  emit: InstallSink
  signal?: AbortSignal
}

/**
 * Fetches the bundle and, once it is unpacked (the download then seeds on, in the
 * background, by the node's seed-wait policy), links it into the system and loads its
 * modules. Returns when the tools can be used; a failure before that is thrown, one
 * after it is a warning.
 */
export async function startToolBundle (opts: StartBundleOptions): Promise<RunningBundle> {
  const { ref, setup } = opts
  const abort = new AbortController()
  const signal = opts.signal === undefined ? abort.signal : AbortSignal.any([opts.signal, abort.signal])
  let unpacked = false
  let lastFigures: ProgressFigures | undefined
  let markUnpacked!: () => void
  let failed!: (err: unknown) => void
  const ready = new Promise<void>((resolve, reject) => { markUnpacked = () => { unpacked = true; resolve() }; failed = reject })
  // The bundle's download is a step of the install until the bundle is in place, told
  // as "tools" phases; its progress and image events stay here (the fleet view's image
  // and progress are the node's image's). After that, only its warnings.
  const emit: EventSink = e => {
    if (e.type === 'progress' || e.type === 'done') { lastFigures = e; if (e.type === 'progress') return }
    if (e.type === 'phase' && e.phase === 'seeding') markUnpacked()
    if (e.type === 'warning') { opts.emit({ type: 'warning', message: `${ref}: ${e.message}` }); return }
    if (unpacked || e.type !== 'phase') return
    opts.emit({ type: 'phase', phase: 'tools', detail: nestedPhaseDetail(ref, e) })
  }
  await rm(setup.dir, { recursive: true, force: true })
  await mkdir(setup.dir, { recursive: true })
  // Its own port (the image's swarm takes the configured one) and RAM staging: no disk is ready yet.
  const settings: DownloadSettings = { ...opts.settings, peerPort: 0, staging: undefined, transport: besideTheImage(opts.settings.transport) }
  const finished = deployImage({ metainfo: opts.metainfo, target: setup.dir, settings, emit, signal }).then(
    () => markUnpacked(),
    err => {
      if (!unpacked) failed(err)
      else if (!abort.signal.aborted) opts.emit({ type: 'warning', message: `${ref}: stopped seeding: ${describeError(err)}` })
    })
  const stop = async (): Promise<void> => {
    abort.abort()
    await finished
    // Stopped while seeding, the download keeps its staging file for a resume; the
    // bundle is unpacked and it would only hold RAM (/dev/shm) until the node reboots.
    if (unpacked) await removeDeadStaging(stagingDirs(setup.dir, undefined), '', '')
  }
  try {
    await ready
    const fetched = lastFigures === undefined ? '' : `, ${describeSources(lastFigures)}`
    const { linked, replaced } = await linkTree(setup.dir, setup.root)
    const modules = await loadModules(setup.root, opts.signal)
    return { summary: `${ref} in place${fetched}: ${linked} files linked into ${setup.root} (${replaced} replaced); ${modules}`, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

export interface ToolsStepOptions {
  server: string
  /** the si.tools setting: a bundle, `none`, or undefined (the initramfs's) */
  setting: string | undefined
  trustedKey?: string
  settings: DownloadSettings
  setup: ToolBundleSetup
  paths: SystemPaths
  emit: InstallSink
  signal?: AbortSignal
}

/**
 * The install's tools step: the bundle this initramfs needs, in place and seeding, and
 * the disks its drivers show; undefined when the initramfs needs none.
 */
export async function toolsStep (opts: ToolsStepOptions): Promise<RunningBundle | undefined> {
  const ref = await toolBundleRef(opts.setting, opts.setup.nameFile)
  if (ref === undefined) return undefined
  opts.emit({ type: 'phase', phase: 'tools', detail: `${ref} through the swarm, into ${opts.setup.dir}` })
  const metainfo = await loadToolBundleTorrent(opts.server, ref, { signal: opts.signal, trustedKey: opts.trustedKey })
  const running = await startToolBundle({ ref, metainfo, settings: opts.settings, setup: opts.setup, emit: opts.emit, signal: opts.signal })
  opts.emit({ type: 'phase', phase: 'tools', detail: running.summary })
  await waitForDisks(opts.paths, DISK_WAIT_MS)
  return running
}
