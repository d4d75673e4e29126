// Extended attributes (ACLs included: they are the system.posix_acl_* xattrs) through
// the `attr` package's tools, since Node has no getxattr/setxattr. Both directions are
// batched into one process per tree: `getfattr -R --dump` reads a whole tree, and
// `setfattr --restore` applies a whole list, so the cost does not grow with a process
// per file. Paths travel octal-escaped (\ooo), the tools' own quoting, so names that are
// not UTF-8 or contain newlines survive.
import { spawnBounded } from './spawn-bounded.ts'
import { randomBytes } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SiError } from '../errors.ts'

const GETFATTR = 'getfattr'
const SETFATTR = 'setfattr'
const FILE_LINE = '# file: '
/** stderr kept for an error message. */
const MAX_STDERR_BYTES = 64 * 1024
/** Leaves room for the tools; a hung one must not hang a pack or an install. */
const TOOL_TIMEOUT_MS = 10 * 60 * 1000

export type Xattrs = Map<string, Buffer>

export interface ToolResult { status: number | null; stdout: Buffer; stderr: string }

/** Runs a tool with an argument array, collecting its output; ENOENT becomes a clear error. */
export function runTool (tool: string, args: string[], opts: { input?: Buffer; cwd?: string; timeoutMs?: number; package?: string } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawnBounded(tool, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], cwd: opts.cwd }, opts.timeoutMs ?? TOOL_TIMEOUT_MS)
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
 * Every xattr under `root`, symlinks not followed, keyed by the path relative to root as
 * a latin1 string (one char per byte: lossless for any name). The root itself is "".
 */
export async function readTreeXattrs (root: string): Promise<Map<string, Xattrs>> {
  const r = await runTool(GETFATTR, ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '--', root], { package: 'attr' })
  // getfattr says 1 when some file had no xattr support (e.g. /proc-like); real failures print more.
  if (r.status !== 0 && r.stdout.length === 0 && r.stderr !== '') throw new SiError('ERR_TOOL_FAILED', `getfattr on ${root} failed: ${r.stderr}`)
  const rootBytes = Buffer.from(root.replace(/\/+$/, ''))
  const out = new Map<string, Xattrs>()
  let current: Xattrs | undefined
  let start = 0
  const text = r.stdout
  while (start < text.length) {
    let end = text.indexOf(0x0a, start)
    if (end < 0) end = text.length
    const line = text.subarray(start, end)
    start = end + 1
    if (line.length === 0) { current = undefined; continue }
    if (line.subarray(0, FILE_LINE.length).toString('latin1') === FILE_LINE) {
      const abs = unquoteBytes(line.subarray(FILE_LINE.length))
      let rel = abs.equals(rootBytes) ? Buffer.alloc(0) : abs.subarray(rootBytes.length + 1)
      if (rel.length > 0 && !abs.subarray(0, rootBytes.length + 1).equals(Buffer.concat([rootBytes, Buffer.from('/')]))) {
        throw new SiError('ERR_TOOL_FAILED', `getfattr reported a path outside ${root}`)
      }
      rel = Buffer.from(rel)
      current = new Map()
      out.set(rel.toString('latin1'), current)
      continue
    }
    if (current === undefined) continue
    const s = line.toString('latin1')
    const eq = s.indexOf('=')
    const name = unquoteBytes(Buffer.from(eq < 0 ? s : s.slice(0, eq), 'latin1')).toString('latin1')
    current.set(name, parseValue(eq < 0 ? '' : s.slice(eq + 1), name))
  }
  for (const [k, v] of out) if (v.size === 0) out.delete(k)
  return out
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
