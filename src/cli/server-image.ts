// si-server's fidelity commands: image verify, image capture, override add/list/rm.
// Kept out of the entry point so it only dispatches.
import { createReadStream } from 'node:fs'
import { SiError } from '../errors.ts'
import { parseArgs, stringFlag, requireFlag, numberFlag, noExtraPositionals, type ParsedArgs } from './args.ts'
import { captureImage, DEFAULT_EXCLUDES } from '../image/capture.ts'
import { COMPRESSIONS, DEFAULT_COMPRESSION, parseCompression, type Compression } from '../image/compression.ts'
import { overrideRepository } from '../image/overrides.ts'
import { ImageRepository, type ImageVersion } from '../image/repository.ts'
import { ATTRIBUTES, diffSnapshots, formatDifference, snapshotArchive, snapshotTree } from '../image/verify.ts'

export const VERIFY_USAGE = `usage: si-server image verify NAME[@VERSION] --against DIR [options]

Compares an image (and the overrides laid over it) with a directory tree, attribute by
attribute, and lists every difference. Exit status 0: identical; 1: differences.

  --against DIR         the tree to check (an installed target, or any directory)
  --override NAME[@N]   an override laid over the image, in order (repeatable)
  --ignore ATTR,...     leave attributes out: ${ATTRIBUTES.join(', ')}
                        (atime: listing a directory moves its atime, so a tree that was
                        browsed or extracted by GNU tar differs there)
  --max N               print at most N differences (default all)
  --json                the differences as JSON
`

export const CAPTURE_USAGE = `usage: si-server image capture NAME --from SOURCE [options]

Copies a running machine's root file system over rsync (-aHAXS --numeric-ids, one file
system) and adds it as a new version of image NAME.

  --from SOURCE         HOST (its rsync daemon's "root" module), HOST:MODULE,
                        HOST:/PATH (over ssh), rsync://HOST[:PORT]/MODULE or /PATH
  --rsync-port PORT     the client's rsync daemon port (default 873)
  --exclude PATTERN     also leave out PATTERN (rsync syntax, anchored at /; repeatable)
  --no-default-excludes copy what is excluded by default:
                        ${DEFAULT_EXCLUDES.join(' ')}
  --compression KIND    ${COMPRESSIONS.join(', ')} (default ${DEFAULT_COMPRESSION})
  --piece-length BYTES  torrent piece size
`

export const OVERRIDE_USAGE = `usage: si-server override add NAME --from DIR [--compression KIND]
       si-server override list [--json]
       si-server override rm NAME[@VERSION]

Overrides are small trees laid over the image after extraction: the overrides named
after the node's groups (in order), then the one named after the node.
`

function helpOr (args: ParsedArgs, usage: string): boolean {
  if (args.flags.help !== true) return false
  process.stdout.write(usage)
  return true
}

function compressionFlag (args: ParsedArgs): Compression | undefined {
  const c = stringFlag(args, 'compression')
  return c === undefined ? undefined : parseCompression(c)
}

function progressPrinter (): (phase: string, done: number, total?: number) => void {
  let lastShown = 0
  return (phase, done, total) => {
    if (Date.now() - lastShown < 1000) return
    lastShown = Date.now()
    process.stderr.write(`si-server: ${phase} ${(done / 1e6).toFixed(1)} MB${total !== undefined ? ` of ${(total / 1e6).toFixed(1)} MB` : ''}\n`)
  }
}

function describeAdded (v: ImageVersion, started: number): string {
  return `${v.name}@${v.version}: ${v.entries} entries, ${v.size} bytes (${v.compression}), piece ${v.pieceLength}, info hash ${v.infoHashHex} (${((Date.now() - started) / 1000).toFixed(1)} s)`
}

export async function imageVerify (argv: string[], repoDir: string): Promise<number> {
  const args = parseArgs(argv, { strings: ['repo', 'against', 'ignore', 'max'], booleans: ['json'], repeatable: ['override'] })
  if (helpOr(args, VERIFY_USAGE)) return 0
  const ref = args.positional[0]
  if (ref === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `missing NAME[@VERSION]; ${VERIFY_USAGE.split('\n')[0]}`)
  noExtraPositionals(args, 1, VERIFY_USAGE)
  const against = requireFlag(args, 'against', 'DIR')
  const ignore = (stringFlag(args, 'ignore') ?? '').split(',').filter(s => s !== '')
  const max = numberFlag(args, 'max', { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true })
  const root = stringFlag(args, 'repo') ?? repoDir
  const image = await new ImageRepository(root).resolve(ref)
  let expected = await snapshotArchive(createReadStream(image.tarPath))
  const overrides = overrideRepository(root)
  for (const [i, o] of ((args.flags.override as string[] | undefined) ?? []).entries()) {
    const v = await overrides.resolve(o)
    expected = await snapshotArchive(createReadStream(v.tarPath), { base: expected, layer: `override${i}` })
  }
  const diffs = diffSnapshots(expected, await snapshotTree(against), { ignore })
  if (args.flags.json === true) process.stdout.write(JSON.stringify(diffs, null, 2) + '\n')
  else {
    for (const d of diffs.slice(0, max ?? diffs.length)) process.stdout.write(formatDifference(d) + '\n')
    const shown = max !== undefined && diffs.length > max ? ` (${max} shown)` : ''
    process.stderr.write(`si-server: ${image.name}@${image.version} vs ${against}: ${diffs.length === 0 ? 'no difference' : `${diffs.length} difference(s)${shown}`} in ${expected.size} entries\n`)
  }
  return diffs.length === 0 ? 0 : 1
}

export async function imageCapture (argv: string[], repoDir: string): Promise<number> {
  const args = parseArgs(argv, { strings: ['repo', 'from', 'rsync-port', 'compression', 'piece-length'], booleans: ['verbose'], onByDefault: ['default-excludes'], repeatable: ['exclude'] })
  if (helpOr(args, CAPTURE_USAGE)) return 0
  const name = args.positional[0]
  if (name === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `missing image NAME; ${CAPTURE_USAGE.split('\n')[0]}`)
  noExtraPositionals(args, 1, CAPTURE_USAGE)
  const started = Date.now()
  const result = await captureImage(new ImageRepository(stringFlag(args, 'repo') ?? repoDir), name, {
    from: requireFlag(args, 'from', 'SOURCE'),
    rsyncPort: numberFlag(args, 'rsync-port', { min: 1, max: 65535, integer: true }),
    excludes: (args.flags.exclude as string[] | undefined) ?? [],
    noDefaultExcludes: args.flags['default-excludes'] === false,
    compression: compressionFlag(args),
    pieceLength: numberFlag(args, 'piece-length', { min: 16384, max: 64 * 1024 * 1024, integer: true }),
    onProgress: progressPrinter(),
    onOutput: args.flags.verbose === true ? line => process.stderr.write(`rsync: ${line}\n`) : undefined
  })
  if (result.vanished) process.stderr.write('si-server: warning: some files vanished on the client during the copy (rsync exit 24)\n')
  process.stderr.write(`si-server: captured ${describeAdded(result.version, started)}\n`)
  process.stdout.write(`${result.version.name}@${result.version.version}\n`)
  return 0
}

export async function overrideCommand (argv: string[], repoDir: string): Promise<number> {
  const sub = argv[0]
  const args = parseArgs(argv.slice(1), { strings: ['repo', 'from', 'compression', 'piece-length'], booleans: ['json'] })
  if (sub === undefined || sub === '--help' || sub === '-h' || helpOr(args, OVERRIDE_USAGE)) {
    process.stdout.write(OVERRIDE_USAGE)
    return sub === undefined ? 2 : 0
  }
  const repo = overrideRepository(stringFlag(args, 'repo') ?? repoDir)
  if (sub === 'add') {
    const name = args.positional[0]
    if (name === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `missing override NAME; ${OVERRIDE_USAGE.split('\n')[0]}`)
    noExtraPositionals(args, 1, OVERRIDE_USAGE)
    const started = Date.now()
    const v = await repo.add(name, {
      from: requireFlag(args, 'from', 'DIR'),
      compression: compressionFlag(args),
      pieceLength: numberFlag(args, 'piece-length', { min: 16384, max: 64 * 1024 * 1024, integer: true })
    })
    process.stderr.write(`si-server: added override ${describeAdded(v, started)}\n`)
    process.stdout.write(`${v.name}@${v.version}\n`)
    return 0
  }
  if (sub === 'list' || sub === 'ls') {
    noExtraPositionals(args, 0, OVERRIDE_USAGE)
    const versions = await repo.list()
    if (args.flags.json === true) process.stdout.write(JSON.stringify(versions, null, 2) + '\n')
    else if (versions.length === 0) process.stdout.write('no overrides\n')
    else for (const v of versions) process.stdout.write(`${v.name}@${v.version}  ${v.size} bytes  ${v.entries} entries  ${v.compression}  ${v.createdAt}\n`)
    return 0
  }
  if (sub === 'rm' || sub === 'remove') {
    const ref = args.positional[0]
    if (ref === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `missing NAME[@VERSION]; ${OVERRIDE_USAGE.split('\n')[0]}`)
    noExtraPositionals(args, 1, OVERRIDE_USAGE)
    for (const v of await repo.remove(ref)) process.stdout.write(`removed override ${v.name}@${v.version}\n`)
    return 0
  }
  throw new SiError('ERR_INVALID_ARGUMENT', `unknown override command ${JSON.stringify(sub)}; try si-server override --help`)
}

/** For `image add --compression`. */
export { compressionFlag }
