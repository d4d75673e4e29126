// Extended attributes (ACLs included: they are the system.posix_acl_* xattrs) through
// the `attr` package's tools, since Node has no getxattr/setxattr. Both directions are
// batched, so the cost does not grow with a process per file: `getfattr -R --dump` reads
// a whole tree, or getfattr reads a list of paths some thousands at a time (XattrBatches:
// no directory listed again, so the packer's walk stays the only traversal), and
// `setfattr --restore` applies a whole list. Paths travel octal-escaped (\ooo), the tools' own quoting, so names that are
// not UTF-8 or contain newlines survive.
import { spawnBounded } from './spawn-bounded.ts'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SiError } from '../errors.ts'

const GETFATTR = 'getfattr'
/** Dump every xattr (ACLs too) of each path given, symlinks not followed, values in hex. */
const GETFATTR_DUMP = ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names']
/** Hands getfattr a list of raw-byte paths read from stdin (names need not be UTF-8). */
const XARGS = 'xargs'
/** xargs' status when the command was not found. */
const XARGS_COMMAND_MISSING = 127
/**
 * Paths in the first getfattr batch (small, so the walk starts at once) and in the
 * largest (each batch twice its predecessor): a few batches cover a tree, each a
 * process or two.
 */
const FIRST_BATCH_PATHS = 256
const MAX_BATCH_PATHS = 16384
/** Batches read ahead of the one the walk is in. */
const BATCHES_AHEAD = 2
/** getfattr's complaint about a file system without xattrs: nothing to read there. */
const NOT_SUPPORTED = /: Operation not supported$/
const SETFATTR = 'setfattr'
const FILE_LINE = '# file: '
const NUL = Buffer.from([0])
/** stderr kept for an error message. */
const MAX_STDERR_BYTES = 64 * 1024
/** Leaves room for the tools; a hung one must not hang a pack or an install. */
const TOOL_TIMEOUT_MS = 10 * 60 * 1000

export type Xattrs = Map<string, Buffer>

export interface ToolResult { status: number | null; stdout: Buffer; stderr: string }

/** Runs a tool with an argument array, collecting its output; ENOENT becomes a clear error. Its stdin: `input`, or the descriptor `stdin`, or nothing. */
export function runTool (tool: string, args: string[], opts: { input?: Buffer; stdin?: number; cwd?: string; timeoutMs?: number; package?: string; signal?: AbortSignal } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawnBounded(tool, args, { stdio: [opts.stdin ?? (opts.input === undefined ? 'ignore' : 'pipe'), 'pipe', 'pipe'], cwd: opts.cwd, signal: opts.signal }, opts.timeoutMs ?? TOOL_TIMEOUT_MS)
    const out: Buffer[] = []
    let err = ''
    child.stdout!.on('data', (c: Buffer) => out.push(c))
    child.stderr!.on('data', (c: Buffer) => { if (err.length < MAX_STDERR_BYTES) err += c.toString() })
    child.on('error', e => {
      const missing = (e as NodeJS.ErrnoException).code === 'ENOENT'
      reject(new SiError('ERR_TOOL_MISSING', missing ? `${tool} is not installed${opts.package !== undefined ? ` (Debian package ${opts.package})` : ''}` : `cannot run ${tool}: ${e.message}`, { cause: e }))
    })
    child.on('close', (status, signal) => resolve({ status: status ?? (signal !== null ? 128 : null), stdout: Buffer.concat(out), stderr: err.trim() }))
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {}) // reported through the exit status
      child.stdin!.end(opts.input)
    }
  })
}

/** The tools' quoting: \ooo for backslash, control and non-ASCII bytes. */
export function quoteBytes (bytes: Buffer): string {
  let out = ''
  for (const b of bytes) {
    out += b > 0x20 && b < 0x7f && b !== 0x5c && b !== 0x3d ? String.fromCharCode(b) : '\\' + b.toString(8).padStart(3, '0')
  }
  return out
}

export function unquoteBytes (text: Buffer): Buffer {
  const out: number[] = []
  for (let i = 0; i < text.length; i++) {
    if (text[i] === 0x5c && i + 3 < text.length && /^[0-7]{3}$/.test(text.subarray(i + 1, i + 4).toString('latin1'))) {
      out.push(parseInt(text.subarray(i + 1, i + 4).toString('latin1'), 8) & 0xff)
      i += 3
    } else out.push(text[i])
  }
  return Buffer.from(out)
}

function parseValue (text: string, where: string): Buffer {
  if (text === '') return Buffer.alloc(0)
  if (text.startsWith('0x')) return Buffer.from(text.slice(2), 'hex')
  if (text.startsWith('0s')) return Buffer.from(text.slice(2), 'base64')
  if (text.startsWith('"') && text.endsWith('"')) return unquoteBytes(Buffer.from(text.slice(1, -1), 'latin1'))
  throw new SiError('ERR_ARCHIVE', `${where}: unexpected getfattr value "${text.slice(0, 40)}"`)
}

/**
 * Parses `getfattr --dump` output: each "# file:" line names a path, which `relOf` turns
 * into the key (the path relative to the tree, as a latin1 string: one char per byte,
 * lossless for any name), and the "name=value" lines below it are its xattrs.
 */
function parseDump (text: Buffer, relOf: (printed: Buffer) => Buffer, into: Map<string, Xattrs>): void {
  let current: Xattrs | undefined
  let start = 0
  while (start < text.length) {
    let end = text.indexOf(0x0a, start)
    if (end < 0) end = text.length
    const line = text.subarray(start, end)
    start = end + 1
    if (line.length === 0) { current = undefined; continue }
    if (line.subarray(0, FILE_LINE.length).toString('latin1') === FILE_LINE) {
      current = new Map()
      into.set(relOf(unquoteBytes(line.subarray(FILE_LINE.length))).toString('latin1'), current)
      continue
    }
    if (current === undefined) continue
    const s = line.toString('latin1')
    const eq = s.indexOf('=')
    const name = unquoteBytes(Buffer.from(eq < 0 ? s : s.slice(0, eq), 'latin1')).toString('latin1')
    current.set(name, parseValue(eq < 0 ? '' : s.slice(eq + 1), name))
  }
  for (const [k, v] of into) if (v.size === 0) into.delete(k)
}

/**
 * Every xattr under `root`, symlinks not followed, keyed by the path relative to root as
 * a latin1 string (one char per byte: lossless for any name). The root itself is "".
 */
export async function readTreeXattrs (root: string): Promise<Map<string, Xattrs>> {
  const r = await runTool(GETFATTR, ['-R', '-P', ...GETFATTR_DUMP, '--', root], { package: 'attr' })
  // getfattr says 1 when some file had no xattr support (e.g. /proc-like); real failures print more.
  if (r.status !== 0 && r.stdout.length === 0 && r.stderr !== '') throw new SiError('ERR_TOOL_FAILED', `getfattr on ${root} failed: ${r.stderr}`)
  const rootBytes = Buffer.from(root.replace(/\/+$/, ''))
  const rootPrefix = Buffer.concat([rootBytes, Buffer.from('/')])
  const out = new Map<string, Xattrs>()
  parseDump(r.stdout, abs => {
    if (abs.equals(rootBytes)) return Buffer.alloc(0)
    if (!abs.subarray(0, rootPrefix.length).equals(rootPrefix)) throw new SiError('ERR_TOOL_FAILED', `getfattr reported a path outside ${root}`)
    return abs.subarray(rootPrefix.length)
  }, out)
  return out
}

/** A descriptor of an anonymous file holding `data`, at offset 0: a child's stdin. */
function inputFile (data: Buffer): number {
  const path = join(tmpdir(), `si-paths-${process.pid}-${randomBytes(6).toString('hex')}`)
  const fd = openSync(path, 'wx+', 0o600)
  try {
    unlinkSync(path)
    // Positioned writes leave the offset at 0, where the child starts reading.
    for (let done = 0; done < data.length;) done += writeSync(fd, data, done, data.length - done, done)
    return fd
  } catch (err) {
    closeSync(fd)
    throw err
  }
}

/** The path getfattr is given for `rel` (run in the tree's root): "." for the root itself. */
const DOT = Buffer.from('.')

/**
 * The xattrs of a list of paths under `root`, in the list's order, read by getfattr a
 * batch at a time (through xargs, which takes the paths as raw bytes) a few batches
 * ahead of whoever consumes them, so the reading runs on another core beside the walk.
 * Nothing is listed: getfattr only asks each path for its xattrs, which moves no atime.
 */
export class XattrBatches {
  private readonly found = new Map<string, Xattrs>()
  /** Index of the first path of each batch, and one past the last. */
  private readonly bounds: number[] = [0]
  private readonly reads: Array<Promise<void> | undefined> = []
  /** Paths [0, readUpTo) have been read. */
  private readUpTo = 0
  private readonly controller = new AbortController()

  constructor (private readonly root: string, private readonly paths: Buffer[]) {
    for (let size = FIRST_BATCH_PATHS, end = size; end < paths.length; size = Math.min(2 * size, MAX_BATCH_PATHS), end += size) this.bounds.push(end)
    this.bounds.push(paths.length)
    for (let b = 0; b < Math.min(BATCHES_AHEAD, this.bounds.length - 1); b++) this.start(b)
  }

  /** Whether the xattrs of paths[index] are known. */
  hasRead (index: number): boolean {
    return index < this.readUpTo
  }

  /** Waits until the xattrs of paths[index] are known, starting the batches after it. */
  async readPast (index: number): Promise<void> {
    while (index >= this.readUpTo) {
      const batch = this.bounds.findIndex((start, b) => b + 1 < this.bounds.length && index < this.bounds[b + 1] && index >= start)
      for (let b = batch; b <= Math.min(batch + BATCHES_AHEAD, this.bounds.length - 2); b++) this.start(b)
      await this.reads[batch]
      this.readUpTo = Math.max(this.readUpTo, this.bounds[batch + 1])
    }
  }

  /** The xattrs of `rel`, once read (readPast). */
  of (rel: Buffer): Xattrs | undefined {
    return this.found.size === 0 ? undefined : this.found.get(rel.toString('latin1'))
  }

  /** Stops the batches still running. */
  stop (): void {
    this.controller.abort()
  }

  private start (batch: number): void {
    if (this.reads[batch] !== undefined) return
    const list = this.paths.slice(this.bounds[batch], this.bounds[batch + 1])
    const read = this.read(list)
    read.catch(() => {}) // reported to whoever waits for it
    this.reads[batch] = read
  }

  private async read (list: Buffer[]): Promise<void> {
    // From a file, not a pipe: a pipe takes 64 KiB at once, the rest only when this
    // thread's event loop turns, which the walk does not let it do.
    const input = inputFile(Buffer.concat(list.flatMap(p => [p.length === 0 ? DOT : p, NUL])))
    let r: ToolResult
    try {
      r = await runTool(XARGS, ['-0', GETFATTR, ...GETFATTR_DUMP, '--'], { stdin: input, cwd: this.root, package: 'findutils', signal: this.controller.signal })
    } finally {
      closeSync(input)
    }
    if (r.status === XARGS_COMMAND_MISSING) throw new SiError('ERR_TOOL_MISSING', `${GETFATTR} is not installed (Debian package attr)`)
    const complaints = r.stderr.split('\n').filter(line => line !== '' && !NOT_SUPPORTED.test(line))
    if (r.status !== 0 && complaints.length > 0) throw new SiError('ERR_TOOL_FAILED', `getfattr in ${this.root} failed: ${complaints.slice(0, 5).join('; ')}`)
    parseDump(r.stdout, printed => printed.equals(DOT) ? Buffer.alloc(0) : printed, this.found)
  }
}

export interface XattrWrite {
  /** Absolute path, raw bytes. */
  path: Buffer
  xattrs: Xattrs
  /** Named in errors. */
  entry: string
}

/** Applies xattrs to many paths with one setfattr process; symlinks are not followed. */
export async function applyXattrs (writes: XattrWrite[]): Promise<void> {
  if (writes.length === 0) return
  const lines: string[] = []
  for (const w of writes) {
    lines.push(FILE_LINE + quoteBytes(w.path))
    for (const [name, value] of w.xattrs) lines.push(`${quoteBytes(Buffer.from(name, 'latin1'))}=0x${value.toString('hex')}`)
    lines.push('')
  }
  const file = join(tmpdir(), `si-xattrs-${process.pid}-${randomBytes(6).toString('hex')}`)
  await writeFile(file, lines.join('\n') + '\n', { encoding: 'latin1', mode: 0o600 })
  try {
    const r = await runTool(SETFATTR, ['-h', `--restore=${file}`], { package: 'attr' })
    if (r.status !== 0) {
      // setfattr names the path it failed on; map it back to the archive entry.
      const firstLine = r.stderr.split('\n')[0] ?? ''
      const culprit = writes.find(w => firstLine.includes(w.path.toString('utf8')))
      throw new SiError('ERR_TOOL_FAILED', `setting extended attributes failed${culprit !== undefined ? ` for entry "${culprit.entry}"` : ''}: ${r.stderr}`)
    }
  } finally {
    await rm(file, { force: true })
  }
}
