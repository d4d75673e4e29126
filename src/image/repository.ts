// The image repository: immutable, numbered versions of named images, each a tarball
// (image.tar, image.tar.gz or image.tar.zst), its torrent and a small meta.json. A version appears in one atomic rename once it is
// complete, so the seeder and the API never see half of one.
import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import { isRunning } from '../formats/work-owner.ts'
import { formatImageRef, isImageName, isVersionName, parseImageRef } from '../formats/image-ref.ts'
import { checkPieceLength, encodeTorrent, parseTorrent } from '../torrent/metainfo.ts'
import { packDirectory } from './pack.ts'
import { PayloadHashes, writePayload } from './pack-payload.ts'
import { COMPRESSIONS, DEFAULT_COMPRESSION, compressionSuffix, type Compression } from './compression.ts'

export const IMAGES_DIR = 'images'
/** Overrides (trees laid over an image after extraction) are versioned like images, here. */
export const OVERRIDES_DIR = 'overrides'
/**
 * The payload of an uncompressed version. A compressed one is named for what it holds
 * (image.tar.gz, image.tar.zst), so whoever downloads it saves a file that says so;
 * versions made before that rule keep theirs under this name (meta.json then has no
 * payloadFile), and the server still answers this name for every version.
 */
export const TAR_FILE = 'image.tar'
export const TORRENT_FILE = 'image.torrent'
export const META_FILE = 'meta.json'
/** Work in progress lives next to the versions (same filesystem, so rename is atomic). */
const INCOMING_PREFIX = '.incoming-'
const TRASH_PREFIX = '.trash-'
/** Highest number ever given to a version of the image: numbers are never reused, so
 * "NAME@N" names one content for as long as the image exists. */
const LAST_VERSION_FILE = '.last-version'

/** The name a payload compressed as `c` is stored and served under. */
export function payloadFileName (c: Compression): string {
  return `${TAR_FILE}${compressionSuffix(c)}`
}

/** Every name a payload may have, whatever its compression. */
export const PAYLOAD_FILES: readonly string[] = COMPRESSIONS.map(payloadFileName)

export interface ImageVersion {
  name: string
  version: number
  dir: string
  /** The payload file: the tar, compressed as `compression`. */
  tarPath: string
  /** The payload's name, by its compression: the server's URL and the web seed use it. */
  payloadName: string
  torrentPath: string
  size: number
  infoHashHex: string
  pieceLength: number
  createdAt: string
  source: string
  entries: number
  /** Disk space the extracted image needs (absent in versions made before it was recorded). */
  unpackedBytes?: number
  compression: Compression
}

/**
 * What meta.json holds: the paths are derived from where the version lives. payloadFile
 * is absent from versions made when every payload was named image.tar.
 */
type StoredMeta = Omit<ImageVersion, 'dir' | 'tarPath' | 'payloadName' | 'torrentPath'> & { payloadFile?: string; skipped?: string[] }

export type AddPhase = 'pack' | 'hash'

export interface AddOptions {
  from: string
  pieceLength?: number
  onProgress?: (phase: AddPhase, done: number, total?: number) => void
  signal?: AbortSignal
  compression?: Compression
}

async function fsyncPath (path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

function isMissing (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

/** Work directories: PREFIX VERSION-PID-RANDOM (before the pid was recorded: VERSION-RANDOM). */
const WORK_NAME = /^(?:\.incoming-|\.trash-)\d+-(?:(\d+)-)?[0-9a-f]+$/

/**
 * Removes the work directories of adds and removes whose process is gone (killed,
 * crashed): left alone they would hold a whole payload each, for good. Ones without a
 * pid come from a version of this program that no longer runs.
 */
export async function removeDeadWork (imageDir: string): Promise<string[]> {
  let names: string[]
  try {
    names = await readdir(imageDir)
  } catch (err) {
    if (isMissing(err)) return []
    throw err
  }
  const removed: string[] = []
  for (const name of names) {
    const m = WORK_NAME.exec(name)
    if (m === null || (m[1] !== undefined && isRunning(Number(m[1])))) continue
    await rm(join(imageDir, name), { recursive: true, force: true })
    removed.push(name)
  }
  return removed
}

export class ImageRepository {
  readonly root: string
  /** Versions being added by this process, so concurrent adds pick distinct numbers. */
  private readonly reserved = new Map<string, Set<number>>()

  /** `collection` is IMAGES_DIR, or OVERRIDES_DIR for a repository of overrides. */
  constructor (root: string, readonly collection: string = IMAGES_DIR) {
    this.root = root
  }

  private imageDir (name: string): string {
    return join(this.root, this.collection, name)
  }

  private versionOf (name: string, version: number, meta: StoredMeta): ImageVersion {
    const dir = join(this.imageDir(name), String(version))
    const compression = meta.compression ?? 'none'
    const payloadName = payloadFileName(compression)
    const payloadFile = meta.payloadFile ?? TAR_FILE
    if (payloadFile !== payloadName && payloadFile !== TAR_FILE) {
      throw new SiError('ERR_IMAGE_NOT_FOUND', `${formatImageRef(name, version)}: meta.json names payload ${JSON.stringify(payloadFile)}, expected ${payloadName}`)
    }
    return {
      name,
      version,
      dir,
      tarPath: join(dir, payloadFile),
      payloadName,
      torrentPath: join(dir, TORRENT_FILE),
      size: meta.size,
      infoHashHex: meta.infoHashHex,
      pieceLength: meta.pieceLength,
      createdAt: meta.createdAt,
      source: meta.source,
      entries: meta.entries,
      ...(meta.unpackedBytes !== undefined ? { unpackedBytes: meta.unpackedBytes } : {}),
      compression
    }
  }

  /** Complete versions of one image, oldest first; unreadable ones are left out. */
  private async versionsOf (name: string): Promise<ImageVersion[]> {
    let names: string[]
    try {
      names = await readdir(this.imageDir(name))
    } catch (err) {
      if (isMissing(err)) return []
      throw err
    }
    const versions: ImageVersion[] = []
    for (const n of names.filter(n => isVersionName(n))) {
      const version = Number(n)
      try {
        const meta = JSON.parse(await readFile(join(this.imageDir(name), n, META_FILE), 'utf8')) as StoredMeta
        if (meta.name === name && meta.version === version) versions.push(this.versionOf(name, version, meta))
      } catch {
        // Not a version we wrote (or damaged by hand): never offer it for deployment.
      }
    }
    return versions.sort((a, b) => a.version - b.version)
  }

  private async imageNames (): Promise<string[]> {
    try {
      const names = await readdir(join(this.root, this.collection))
      return names.filter(n => isImageName(n)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    } catch (err) {
      if (isMissing(err)) return []
      throw err
    }
  }

  async list (): Promise<ImageVersion[]> {
    const all: ImageVersion[] = []
    for (const name of await this.imageNames()) all.push(...await this.versionsOf(name))
    return all
  }

  async resolve (ref: string): Promise<ImageVersion> {
    const { name, version } = parseImageRef(ref)
    const versions = await this.versionsOf(name)
    const found = version === undefined ? versions[versions.length - 1] : versions.find(v => v.version === version)
    if (found !== undefined) return found
    const available = versions.length > 0 ? `; available versions of ${name}: ${versions.map(v => v.version).join(', ')}` : ''
    throw new SiError('ERR_IMAGE_NOT_FOUND', `image "${ref}" not found${available}`)
  }

  async readTorrent (v: ImageVersion): Promise<Buffer> {
    try {
      return await readFile(v.torrentPath)
    } catch (err) {
      if (isMissing(err)) throw new SiError('ERR_IMAGE_NOT_FOUND', `image "${formatImageRef(v.name, v.version)}" has no torrent (removed?)`, { cause: err })
      throw err
    }
  }

  async add (name: string, opts: AddOptions): Promise<ImageVersion> {
    const ref = parseImageRef(name)
    if (ref.version !== undefined) throw new SiError('ERR_INVALID_IMAGE_NAME', `"${name}": versions are numbered by the repository; give the name only`)
    let source
    try {
      source = await stat(opts.from)
    } catch (err) {
      throw new SiError('ERR_SOURCE_NOT_FOUND', `source ${opts.from} does not exist`, { cause: err })
    }
    if (!source.isDirectory()) throw new SiError('ERR_SOURCE_NOT_FOUND', `source ${opts.from} is not a directory`)
    const chosenLength = opts.pieceLength
    // Before packing: an invalid length would be found out only after the whole tree.
    if (chosenLength !== undefined) checkPieceLength(chosenLength)

    const imageDir = this.imageDir(ref.name)
    await mkdir(imageDir, { recursive: true })
    await removeDeadWork(imageDir)
    const version = await this.reserve(ref.name)
    // The pid says whose it is: what a killed add left is removed by the next one.
    const work = join(imageDir, `${INCOMING_PREFIX}${version}-${process.pid}-${randomBytes(6).toString('hex')}`)
    try {
      await mkdir(work)
      const compression = opts.compression ?? DEFAULT_COMPRESSION
      const payloadFile = payloadFileName(compression)
      const tarPath = join(work, payloadFile)
      const hashes = new PayloadHashes(chosenLength)
      const payload = writePayload(tarPath, compression, hashes)
      const [packed, size] = await Promise.all([
        packDirectory(opts.from, payload.input, { signal: opts.signal, onProgress: bytes => opts.onProgress?.('pack', bytes), outputReleasesChunks: true })
          .catch(err => { payload.input.destroy(); throw err }),
        // A compressor or a file that fails must not leave the packer waiting for it to drain.
        payload.done.catch(err => { payload.input.destroy(); throw err })
      ])
      const { pieceLength, pieces } = await hashes.finish(tarPath, opts.signal)
      opts.onProgress?.('hash', size, size)
      const torrent = encodeTorrent({
        // The file name standard clients save under: unique per version.
        name: `${ref.name}-${version}.tar${compressionSuffix(compression)}`,
        // The agent checks its disk against these before fetching a byte.
        unpacked: { bytes: packed.unpackedBytes, entries: packed.entries }
      }, size, pieceLength, pieces)
      const meta = parseTorrent(torrent)
      const stored: StoredMeta = {
        name: ref.name,
        version,
        size: meta.length,
        infoHashHex: meta.infoHashHex,
        pieceLength: meta.pieceLength,
        createdAt: new Date().toISOString(),
        source: opts.from,
        entries: packed.entries,
        unpackedBytes: packed.unpackedBytes,
        compression,
        payloadFile,
        ...(packed.skipped.length > 0 ? { skipped: packed.skipped } : {})
      }
      await writeFile(join(work, TORRENT_FILE), torrent, { flush: true })
      await writeFile(join(work, META_FILE), JSON.stringify(stored, null, 2) + '\n', { flush: true })
      await fsyncPath(work)
      // An abort after the last piece was hashed must still not publish the version.
      if (opts.signal?.aborted === true) throw new SiError('ERR_ABORTED', `adding ${formatImageRef(ref.name, version)} aborted`)
      const final = join(imageDir, String(version))
      try {
        // rename(2) refuses a non-empty target, so another process's version N survives.
        await rename(work, final)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOTEMPTY' || code === 'EEXIST') {
          throw new SiError('ERR_IMAGE_EXISTS', `${formatImageRef(ref.name, version)} was created by another process meanwhile; add again`, { cause: err })
        }
        throw err
      }
      await this.recordVersion(ref.name, version)
      await fsyncPath(imageDir)
      return this.versionOf(ref.name, version, stored)
    } finally {
      this.reserved.get(ref.name)?.delete(version)
      await rm(work, { recursive: true, force: true })
    }
  }

  private async lastVersion (name: string): Promise<number> {
    try {
      const n = Number((await readFile(join(this.imageDir(name), LAST_VERSION_FILE), 'utf8')).trim())
      return Number.isSafeInteger(n) && n > 0 ? n : 0
    } catch (err) {
      if (isMissing(err)) return 0
      throw err
    }
  }

  private async reserve (name: string): Promise<number> {
    const existing = (await this.versionsOf(name)).map(v => v.version)
    const last = await this.lastVersion(name)
    const reserved = this.reserved.get(name) ?? new Set<number>()
    this.reserved.set(name, reserved)
    const version = Math.max(last, ...existing, ...reserved) + 1
    reserved.add(version)
    return version
  }

  private async recordVersion (name: string, version: number): Promise<void> {
    if ((await this.lastVersion(name)) >= version) return
    const file = join(this.imageDir(name), LAST_VERSION_FILE)
    const tmp = `${file}.${randomBytes(6).toString('hex')}`
    await writeFile(tmp, `${version}\n`, { flush: true })
    await rename(tmp, file)
  }

  async remove (ref: string): Promise<ImageVersion[]> {
    const { name, version } = parseImageRef(ref)
    const versions = await this.versionsOf(name)
    const doomed = version === undefined ? versions : versions.filter(v => v.version === version)
    if (doomed.length === 0) await this.resolve(ref) // throws the same not-found message resolve gives
    const imageDir = this.imageDir(name)
    for (const v of doomed) {
      // Out of sight first, then deleted: a crash mid-delete leaves trash, not a broken version.
      const trash = join(imageDir, `${TRASH_PREFIX}${v.version}-${process.pid}-${randomBytes(6).toString('hex')}`)
      await rename(v.dir, trash)
      await rm(trash, { recursive: true, force: true })
    }
    if (version === undefined) {
      // Only succeeds when empty: an add in progress keeps its directory (and numbering).
      await rm(join(imageDir, LAST_VERSION_FILE), { force: true })
      await rmdir(imageDir).catch(() => {})
    }
    return doomed
  }
}
