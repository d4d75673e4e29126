// Setting atime and mtime to the nanosecond. Node's utimes takes seconds as a double,
// which near today's dates is only a multiple of 2^-22 s (238 ns), so only some times
// survive it. We emulate libuv's conversion to find a double that lands exactly on the
// wanted time; times that have none (most sub-second times, dates before 1970) are set
// afterwards, all at once:
//  - with perl (Essential in Debian), one process calling utimensat(2) for every path:
//    about 6 ms per 1000 files;
//  - else with coreutils' `touch -d @SEC.NSEC`, one process per distinct time: about
//    0.7 ms per file. touch gets the file as an O_PATH descriptor (/proc/self/fd/N): no
//    path is walked again, symlinks are not followed, and names that are not UTF-8 need
//    no argv encoding.
// Measured on a debootstrap minbase tree (6768 entries, nearly all atimes with
// sub-microsecond parts): touch 4.5 s, perl 0.05 s.
import { spawnBounded } from './spawn-bounded.ts'
import { open, type FileHandle } from 'node:fs/promises'
import { SiError } from '../errors.ts'
import { formatPaxTime } from './tar-format.ts'

const NS_PER_S = 1_000_000_000n
/** Linux open(2) flags Node does not name. */
const O_PATH = 0o10000000
const O_NOFOLLOW = 0o400000
/** Descriptors handed to one touch process (fds 3..). */
const FDS_PER_TOUCH = 64
const PARALLEL_TOUCH = 2
const TOUCH_TIMEOUT_MS = 60_000
/** Doubles tried on either side of the nearest one. */
const SEARCH_STEPS = 4
/** utimensat(2) by architecture, for perl's syscall(); others use touch. */
const UTIMENSAT_SYSCALL: Partial<Record<string, number>> = { x64: 280, arm64: 88, ia32: 320 }
/** Reads NUL-terminated "ASEC ANSEC MSEC MNSEC PATH" records; AT_FDCWD, AT_SYMLINK_NOFOLLOW. */
const PERL_UTIMENSAT = String.raw`
$/ = "\0";
my $nr = shift @ARGV;
while (my $rec = <STDIN>) {
  chop $rec;
  my ($as, $an, $ms, $mn, $path) = split / /, $rec, 5;
  syscall($nr, -100, $path, pack("qqqq", $as, $an, $ms, $mn), 0x100) == 0 or die "$path: $!\n";
}
`

const f64 = new Float64Array(1)
const i64 = new BigInt64Array(f64.buffer)

function nextDouble (x: number, dir: 1 | -1): number {
  f64[0] = x
  i64[0] += BigInt(dir) // positive doubles: adjacent bit patterns are adjacent values
  return f64[0]
}

/**
 * What libuv's uv__fs_to_timespec makes of a double, in nanoseconds: the fraction times
 * 1e9, truncated (the libuv of Node 24; Node 20's also cut it to whole microseconds).
 */
export function libuvNs (t: number): bigint {
  const sec = Math.trunc(t)
  const nsec = Math.trunc((t - sec) * 1e9)
  return BigInt(sec) * NS_PER_S + BigInt(nsec)
}

/** A double Node's utimes turns into exactly `ns`, or undefined if there is none. */
export function exactDouble (ns: bigint): number | undefined {
  if (ns < 0n) return undefined
  const base = Number(ns / NS_PER_S) + Number(ns % NS_PER_S) / 1e9
  if (libuvNs(base) === ns) return base
  for (const dir of [1, -1] as const) {
    let t = base
    for (let i = 0; i < SEARCH_STEPS; i++) {
      t = nextDouble(t, dir)
      if (libuvNs(t) === ns) return t
    }
  }
  return undefined
}

export interface Times { atimeNs: bigint; mtimeNs: bigint }

/** Closest double for Node (for times it cannot set exactly: touch fixes them later). */
function approx (ns: bigint): number {
  const t = Number(ns) / 1e9
  return t < 0 ? 0 : t
}

export function nodeTimes (t: Times): { atime: number; mtime: number; exactA: boolean; exactM: boolean } {
  const a = exactDouble(t.atimeNs)
  const m = exactDouble(t.mtimeNs)
  return { atime: a ?? approx(t.atimeNs), mtime: m ?? approx(t.mtimeNs), exactA: a !== undefined, exactM: m !== undefined }
}

type Which = 'both' | 'atime' | 'mtime'

/** Collects the times Node could not set and applies them with batched touch runs. */
export class TimeFixer {
  /** key "which:ns" to absolute paths (latin1 byte strings). */
  private readonly groups = new Map<string, Set<string>>()
  private readonly byPath = new Map<string, string[]>()
  private readonly wanted = new Map<string, Times>()
  count = 0

  /** `perl: false` forces the touch route (tests, or a system where perl misbehaves). */
  constructor (private readonly opts: { perl?: boolean } = {}) {}

  /** Records what touch must fix for `path` after Node set `t` approximately. */
  add (path: string, t: Times): void {
    const n = nodeTimes(t)
    if (n.exactA && n.exactM) return
    const keys: string[] = []
    if (!n.exactA && !n.exactM && t.atimeNs === t.mtimeNs) keys.push(`both:${t.atimeNs}`)
    else {
      if (!n.exactA) keys.push(`atime:${t.atimeNs}`)
      if (!n.exactM) keys.push(`mtime:${t.mtimeNs}`)
    }
    this.forget(path)
    for (const k of keys) {
      let set = this.groups.get(k)
      if (set === undefined) this.groups.set(k, set = new Set())
      set.add(path)
    }
    this.byPath.set(path, keys)
    this.wanted.set(path, t)
    this.count++
  }

  /** Paths whose fix is still to be applied. */
  get pending (): number { return this.wanted.size }

  /** The entry at `path` was replaced: its pending fix no longer applies. */
  forget (path: string): void {
    for (const k of this.byPath.get(path) ?? []) this.groups.get(k)?.delete(path)
    this.byPath.delete(path)
    this.wanted.delete(path)
  }

  forgetUnder (prefix: string): void {
    for (const p of [...this.byPath.keys()]) if (p.startsWith(prefix)) this.forget(p)
  }

  async apply (): Promise<void> {
    if (this.wanted.size === 0) return
    const viaPerl = this.opts.perl !== false && await withPerl(this.wanted)
    if (viaPerl) {
      this.groups.clear(); this.byPath.clear(); this.wanted.clear()
      return
    }
    const jobs: Array<{ which: Which; ns: bigint; paths: string[] }> = []
    for (const [key, set] of this.groups) {
      const [which, ns] = key.split(':') as [Which, string]
      const paths = [...set]
      for (let i = 0; i < paths.length; i += FDS_PER_TOUCH) jobs.push({ which, ns: BigInt(ns), paths: paths.slice(i, i + FDS_PER_TOUCH) })
    }
    this.groups.clear()
    this.byPath.clear()
    this.wanted.clear()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < jobs.length) await touch(jobs[next++])
    }
    await Promise.all(Array.from({ length: PARALLEL_TOUCH }, worker))
  }
}

function splitNs (ns: bigint): string {
  // utimensat wants tv_nsec in [0, 1e9): floor the seconds for times before 1970.
  let sec = ns / NS_PER_S
  let nsec = ns % NS_PER_S
  if (nsec < 0n) { sec -= 1n; nsec += NS_PER_S }
  return `${sec} ${nsec}`
}

/** All times in one perl process; false when perl (or the syscall number) is not there. */
async function withPerl (wanted: Map<string, Times>): Promise<boolean> {
  const nr = UTIMENSAT_SYSCALL[process.arch]
  if (nr === undefined) return false
  const input = Buffer.concat([...wanted].map(([path, t]) => Buffer.concat([
    Buffer.from(`${splitNs(t.atimeNs)} ${splitNs(t.mtimeNs)} `), Buffer.from(path, 'latin1'), Buffer.from([0])
  ])))
  return await new Promise<boolean>((resolve, reject) => {
    const child = spawnBounded('perl', ['-e', PERL_UTIMENSAT, String(nr)], { stdio: ['pipe', 'ignore', 'pipe'] }, TOUCH_TIMEOUT_MS)
    let stderr = ''
    let missing = false
    child.stderr!.on('data', (c: Buffer) => { stderr += c.toString() })
    child.on('error', err => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') { missing = true; return }
      reject(new SiError('ERR_TOOL_FAILED', `cannot run perl to set nanosecond times: ${err.message}`, { cause: err }))
    })
    child.on('close', code => {
      if (missing) resolve(false)
      else if (code === 0) resolve(true)
      else reject(new SiError('ERR_TOOL_FAILED', `setting nanosecond times failed: ${stderr.trim().slice(0, 500)}`))
    })
    child.stdin!.on('error', () => {}) // reported through the exit status
    child.stdin!.end(input)
  })
}

async function touch (job: { which: Which; ns: bigint; paths: string[] }): Promise<void> {
  const handles: FileHandle[] = []
  try {
    for (const p of job.paths) handles.push(await open(Buffer.from(p, 'latin1'), O_PATH | O_NOFOLLOW))
    const flags = job.which === 'atime' ? ['-a'] : job.which === 'mtime' ? ['-m'] : []
    const args = ['-c', ...flags, '-d', `@${formatPaxTime(job.ns)}`, ...handles.map((_, i) => `/proc/self/fd/${3 + i}`)]
    await new Promise<void>((resolve, reject) => {
      const child = spawnBounded('touch', args, { stdio: ['ignore', 'ignore', 'pipe', ...handles.map(h => h.fd)] }, TOUCH_TIMEOUT_MS)
      let stderr = ''
      child.stderr!.on('data', (c: Buffer) => { stderr += c.toString() })
      child.on('error', err => reject(new SiError((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'ERR_TOOL_MISSING' : 'ERR_TOOL_FAILED', `cannot run touch to set nanosecond times: ${err.message}`, { cause: err })))
      child.on('close', code => {
        if (code === 0) resolve()
        else reject(new SiError('ERR_TOOL_FAILED', `touch failed setting times of ${job.paths.map(p => Buffer.from(p, 'latin1').toString('utf8')).join(', ').slice(0, 300)}: ${stderr.trim()}`))
      })
    })
  } finally {
    await Promise.all(handles.map(h => h.close()))
  }
}
