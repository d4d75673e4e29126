// si-server's repository commands: image add, list, rm, verify, capture; override add,
// list, rm. Each parses its options, calls the image component, and prints the outcome.
import { createReadStream } from 'node:fs'
import { SiError } from '../errors.ts'
import { listOption, option, switchOption } from '../config/options.ts'
import { integer, nonEmpty, oneOf } from '../config/values.ts'
import { captureImage, DEFAULT_EXCLUDES } from '../image/capture.ts'
import { COMPRESSIONS, DEFAULT_COMPRESSION } from '../image/compression.ts'
import { overrideRepository } from '../image/overrides.ts'
import { ImageRepository, OVERRIDES_DIR, type ImageVersion } from '../image/repository.ts'
import { parseImageRef } from '../formats/image-ref.ts'
import { fetchersOf, readInUse } from '../server/in-use.ts'
import { ATTRIBUTES, diffSnapshots, formatDifference, snapshotArchive, snapshotTree } from '../image/verify.ts'
import { MAX_PIECE_LENGTH, MIN_PIECE_LENGTH } from '../torrent/metainfo.ts'
import { REPO_OPTIONS } from '../server/config.ts'
import { noExtraPositionals, readCommandLine, required } from '../config/command-line.ts'
import { commandHelp } from '../config/help.ts'

/** add and capture report progress at most this often */
const PROGRESS_INTERVAL_MS = 1000

const PACK_OPTIONS = {
  pieceLength: option({ flag: 'piece-length', arg: 'BYTES', help: 'torrent piece size, a power of two', defaultText: 'chosen by image size', parse: integer(MIN_PIECE_LENGTH, MAX_PIECE_LENGTH) }),
  compression: option({ flag: 'compression', arg: 'KIND', help: COMPRESSIONS.join(', '), default: DEFAULT_COMPRESSION, parse: oneOf(COMPRESSIONS) })
}

const ADD_OPTIONS = {
  ...REPO_OPTIONS,
  from: option({ flag: 'from', arg: 'DIR', help: 'the root file system to pack', parse: nonEmpty('a directory') }),
  ...PACK_OPTIONS
}
const LIST_OPTIONS = { ...REPO_OPTIONS, json: switchOption({ flag: 'json', help: 'as JSON' }) }
const RM_OPTIONS = {
  ...REPO_OPTIONS,
  force: switchOption({ flag: 'force', help: 'remove a version even while nodes fetch it (a running si-server tells them: they fail with ERR_IMAGE_REMOVED)' })
}
/** Fetchers named in the refusal at most; the count says how many there are. */
const FETCHERS_SHOWN = 5
const VERIFY_OPTIONS = {
  ...REPO_OPTIONS,
  against: option({ flag: 'against', arg: 'DIR', help: 'the tree to check (an installed target, or any directory)', parse: nonEmpty('a directory') }),
  overrides: listOption({ flag: 'override', arg: 'NAME[@N]', help: 'an override laid over the image, in order (repeatable)', parseItem: nonEmpty('NAME or NAME@VERSION') }),
  ignore: listOption({ flag: 'ignore', arg: 'ATTR,...', help: `leave attributes out: ${ATTRIBUTES.join(', ')} (atime: listing a directory moves its atime, so a tree that was browsed or extracted by GNU tar differs there)`, parseItem: oneOf(ATTRIBUTES) }),
  max: option({ flag: 'max', arg: 'N', help: 'print at most N differences', defaultText: 'all', parse: integer(1, Number.MAX_SAFE_INTEGER) }),
  json: switchOption({ flag: 'json', help: 'the differences as JSON' })
}
const CAPTURE_OPTIONS = {
  ...REPO_OPTIONS,
  from: option({ flag: 'from', arg: 'SOURCE', help: 'HOST (its rsync daemon\'s "root" module), HOST:MODULE, HOST:/PATH (over ssh), rsync://HOST[:PORT]/MODULE or /PATH', parse: nonEmpty('a source') }),
  rsyncPort: option({ flag: 'rsync-port', arg: 'PORT', help: 'the client\'s rsync daemon port', defaultText: '873', parse: integer(1, 65535) }),
  excludes: listOption({ flag: 'exclude', arg: 'PATTERN', help: 'also leave out PATTERN (rsync syntax, anchored at /; repeatable)', parseItem: nonEmpty('a pattern') }),
  defaultExcludes: switchOption({ flag: 'default-excludes', default: true, help: `copy what is excluded by default: ${DEFAULT_EXCLUDES.join(' ')}` }),
  verbose: switchOption({ flag: 'verbose', help: 'show rsync\'s output' }),
  ...PACK_OPTIONS
}
const OVERRIDE_RM_OPTIONS = { ...RM_OPTIONS }
const OVERRIDE_ADD_OPTIONS = { ...ADD_OPTIONS, from: option({ ...ADD_OPTIONS.from, help: 'the tree to lay over images' }) }

export const IMAGE_ADD_HELP = commandHelp(['si-server image add NAME --from DIR [options]'], ADD_OPTIONS, { env: true })
export const IMAGE_LIST_HELP = commandHelp(['si-server image list [--repo DIR] [--json]'], LIST_OPTIONS, { env: true })
export const IMAGE_RM_HELP = commandHelp(['si-server image rm NAME[@VERSION] [--repo DIR] [--force]'], RM_OPTIONS, {
  env: true,
  intro: `Removes one version, or every version of an image. A version that nodes are fetching,
as the si-server running on this repository saw a moment ago, is kept unless --force.`
})
export const IMAGE_VERIFY_HELP = commandHelp(['si-server image verify NAME[@VERSION] --against DIR [options]'], VERIFY_OPTIONS, {
  env: true,
  intro: `Compares an image (and the overrides laid over it) with a directory tree, attribute by
attribute, and lists every difference. Exit status 0: identical; 1: differences.`
})
export const IMAGE_CAPTURE_HELP = commandHelp(['si-server image capture NAME --from SOURCE [options]'], CAPTURE_OPTIONS, {
  env: true,
  intro: `Copies a running machine's root file system over rsync (-aHAXS --numeric-ids, one file
system) and adds it as a new version of image NAME.`
})
export const OVERRIDE_HELP = commandHelp([
  'si-server override add NAME --from DIR [options]',
  'si-server override list [--json]',
  'si-server override rm NAME[@VERSION] [--force]'
], { ...OVERRIDE_ADD_OPTIONS, force: RM_OPTIONS.force }, {
  env: true,
  intro: `Overrides are small trees laid over the image after extraction, each layer replacing
what it carries: those the plan names ("overrides": [...], each must exist), then the
one named after each of the node's groups (groups.conf order), then the one named after
the node. The server serves them under /overrides/ with signed torrents, tracks and
seeds every version, and hands each node its list pinned to versions; the agent fetches
them through the swarm like the image. rm keeps a version nodes are fetching unless
--force (they then fail with ERR_IMAGE_REMOVED).`
})

function progressPrinter (): (phase: string, done: number, total?: number) => void {
  let lastShown = 0
  return (phase, done, total) => {
    if (Date.now() - lastShown < PROGRESS_INTERVAL_MS) return
    lastShown = Date.now()
    process.stderr.write(`si-server: ${phase} ${(done / 1e6).toFixed(1)} MB${total !== undefined ? ` of ${(total / 1e6).toFixed(1)} MB` : ''}\n`)
  }
}

function describeAdded (v: ImageVersion, started: number): string {
  return `${v.name}@${v.version}: ${v.entries} entries, ${v.size} bytes (${v.compression}), piece ${v.pieceLength}, info hash ${v.infoHashHex} (${((Date.now() - started) / 1000).toFixed(1)} s)`
}

/** The one positional argument a command takes (NAME or NAME@VERSION). */
function oneArgument (positional: string[], what: string, help: string): string {
  const value = positional[0]
  if (value === undefined) throw new SiError('ERR_INVALID_ARGUMENT', `missing ${what}; ${help.split('\n')[0]}`)
  noExtraPositionals(positional, 1, help)
  return value
}

function formatTable (versions: ImageVersion[]): string {
  if (versions.length === 0) return 'no images\n'
  const rows = [['IMAGE', 'VERSION', 'SIZE', 'PIECE', 'ENTRIES', 'COMPRESSION', 'CREATED', 'INFO HASH'], ...versions.map(v => [
    v.name, String(v.version), `${(v.size / 1e6).toFixed(1)} MB`, `${v.pieceLength / 1024} KiB`, String(v.entries), v.compression, v.createdAt, v.infoHashHex
  ])]
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n'
}

export async function imageAdd (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, ADD_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(IMAGE_ADD_HELP); return 0 }
  const name = oneArgument(positional, 'image NAME', IMAGE_ADD_HELP)
  const started = Date.now()
  const version = await new ImageRepository(o.repo).add(name, {
    from: required(o.from, 'from', 'DIR'),
    pieceLength: o.pieceLength,
    compression: o.compression,
    onProgress: progressPrinter()
  })
  process.stderr.write(`si-server: added ${describeAdded(version, started)}\n`)
  process.stdout.write(`${version.name}@${version.version}\n`)
  return 0
}

export async function imageList (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, LIST_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(IMAGE_LIST_HELP); return 0 }
  noExtraPositionals(positional, 0, IMAGE_LIST_HELP)
  const versions = await new ImageRepository(o.repo).list()
  process.stdout.write(o.json ? JSON.stringify(versions, null, 2) + '\n' : formatTable(versions))
  return 0
}

export async function imageRemove (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, RM_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(IMAGE_RM_HELP); return 0 }
  const ref = oneArgument(positional, 'NAME[@VERSION]', IMAGE_RM_HELP)
  const repo = new ImageRepository(o.repo)
  await checkNotInUse(repo, ref, o.force)
  for (const v of await repo.remove(ref)) process.stdout.write(`removed ${v.name}@${v.version}\n`)
  return 0
}

/**
 * Refuses (ERR_IMAGE_IN_USE) to remove versions that nodes are fetching, as the servers
 * running on this repository recorded it (server/in-use.ts); with `force`, says so and
 * lets the removal go on.
 */
async function checkNotInUse (repo: ImageRepository, ref: string, force: boolean): Promise<void> {
  const { name, version } = parseImageRef(ref)
  const doomed = (await repo.list()).filter(v => v.name === name && (version === undefined || v.version === version))
  const records = await readInUse(repo.root)
  const busy = doomed.map(v => ({ v, ...fetchersOf(records, v.name, v.version, repo.collection) })).filter(b => b.peers.length > 0)
  if (busy.length === 0) return
  const described = busy.map(({ v, peers, servers }) => {
    const shown = peers.slice(0, FETCHERS_SHOWN).join(', ') + (peers.length > FETCHERS_SHOWN ? ', ...' : '')
    return `${repo.collection === OVERRIDES_DIR ? 'override ' : ''}${v.name}@${v.version} is being fetched by ${peers.length} node(s) (${shown}; seen by si-server ${servers.join(', ')})`
  }).join('; ')
  if (!force) {
    throw new SiError('ERR_IMAGE_IN_USE', `${described}. Removing it would stop their installs; wait for them, or remove it anyway with --force`)
  }
  process.stderr.write(`si-server: warning: ${described}; removing it anyway (--force): they fail with ERR_IMAGE_REMOVED\n`)
}

export async function imageVerify (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, VERIFY_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(IMAGE_VERIFY_HELP); return 0 }
  const ref = oneArgument(positional, 'NAME[@VERSION]', IMAGE_VERIFY_HELP)
  const against = required(o.against, 'against', 'DIR')
  const image = await new ImageRepository(o.repo).resolve(ref)
  let expected = await snapshotArchive(createReadStream(image.tarPath))
  const overrides = overrideRepository(o.repo)
  for (const [i, ref] of o.overrides.entries()) {
    const v = await overrides.resolve(ref)
    expected = await snapshotArchive(createReadStream(v.tarPath), { base: expected, layer: `override${i}` })
  }
  const diffs = diffSnapshots(expected, await snapshotTree(against), { ignore: o.ignore })
  if (o.json) process.stdout.write(JSON.stringify(diffs, null, 2) + '\n')
  else {
    for (const d of diffs.slice(0, o.max ?? diffs.length)) process.stdout.write(formatDifference(d) + '\n')
    const shown = o.max !== undefined && diffs.length > o.max ? ` (${o.max} shown)` : ''
    process.stderr.write(`si-server: ${image.name}@${image.version} vs ${against}: ${diffs.length === 0 ? 'no difference' : `${diffs.length} difference(s)${shown}`} in ${expected.size} entries\n`)
  }
  return diffs.length === 0 ? 0 : 1
}

export async function imageCapture (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, CAPTURE_OPTIONS, { env: process.env })
  if (help) { process.stdout.write(IMAGE_CAPTURE_HELP); return 0 }
  const name = oneArgument(positional, 'image NAME', IMAGE_CAPTURE_HELP)
  const started = Date.now()
  const result = await captureImage(new ImageRepository(o.repo), name, {
    from: required(o.from, 'from', 'SOURCE'),
    rsyncPort: o.rsyncPort,
    excludes: o.excludes,
    noDefaultExcludes: !o.defaultExcludes,
    compression: o.compression,
    pieceLength: o.pieceLength,
    onProgress: progressPrinter(),
    onOutput: o.verbose ? line => process.stderr.write(`rsync: ${line}\n`) : undefined
  })
  if (result.vanished) process.stderr.write('si-server: warning: some files vanished on the client during the copy (rsync exit 24)\n')
  process.stderr.write(`si-server: captured ${describeAdded(result.version, started)}\n`)
  process.stdout.write(`${result.version.name}@${result.version.version}\n`)
  return 0
}

export async function overrideCommand (argv: string[]): Promise<number> {
  const sub = argv[0]
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(OVERRIDE_HELP)
    return sub === undefined ? 2 : 0
  }
  if (sub === 'add') {
    const { values: o, positional, help } = readCommandLine(argv.slice(1), OVERRIDE_ADD_OPTIONS, { env: process.env })
    if (help) { process.stdout.write(OVERRIDE_HELP); return 0 }
    const name = oneArgument(positional, 'override NAME', OVERRIDE_HELP)
    const started = Date.now()
    const v = await overrideRepository(o.repo).add(name, { from: required(o.from, 'from', 'DIR'), compression: o.compression, pieceLength: o.pieceLength })
    process.stderr.write(`si-server: added override ${describeAdded(v, started)}\n`)
    process.stdout.write(`${v.name}@${v.version}\n`)
    return 0
  }
  if (sub === 'list' || sub === 'ls') {
    const { values: o, positional, help } = readCommandLine(argv.slice(1), LIST_OPTIONS, { env: process.env })
    if (help) { process.stdout.write(OVERRIDE_HELP); return 0 }
    noExtraPositionals(positional, 0, OVERRIDE_HELP)
    const versions = await overrideRepository(o.repo).list()
    if (o.json) process.stdout.write(JSON.stringify(versions, null, 2) + '\n')
    else if (versions.length === 0) process.stdout.write('no overrides\n')
    else for (const v of versions) process.stdout.write(`${v.name}@${v.version}  ${v.size} bytes  ${v.entries} entries  ${v.compression}  ${v.createdAt}\n`)
    return 0
  }
  if (sub === 'rm' || sub === 'remove') {
    const { values: o, positional, help } = readCommandLine(argv.slice(1), OVERRIDE_RM_OPTIONS, { env: process.env })
    if (help) { process.stdout.write(OVERRIDE_HELP); return 0 }
    const ref = oneArgument(positional, 'NAME[@VERSION]', OVERRIDE_HELP)
    const repo = overrideRepository(o.repo)
    await checkNotInUse(repo, ref, o.force)
    for (const v of await repo.remove(ref)) process.stdout.write(`removed override ${v.name}@${v.version}\n`)
    return 0
  }
  throw new SiError('ERR_INVALID_ARGUMENT', `unknown override command ${JSON.stringify(sub)}; try si-server override --help`)
}
