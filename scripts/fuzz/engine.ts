// A small mutation fuzzer for the parsers that read network or disk input. Each harness
// gives valid seeds and a function that parses one input; the engine mutates the seeds
// (bit flips, bytes replaced, inserted, deleted, duplicated, spliced from another seed,
// boundary values, truncation), runs the parser on each case, and sorts the outcomes:
// accepted, refused with one of the harness's expected typed errors, or a finding (any
// other exception, or no answer in time). Runs are bounded in cases and in seconds, and a
// seed makes them repeatable.

/** What a parser may throw on bad input: a typed error with one of these codes. */
export interface Harness {
  name: string
  /** what the harness feeds, for the report */
  what: string
  seeds: () => Promise<Buffer[]> | Buffer[]
  /** parses one input; throws on refusal; may check invariants and throw a plain Error when one breaks */
  run: (input: Buffer) => Promise<void> | void
  /** the error codes a refusal may carry */
  expectedCodes: readonly string[]
  /** inputs are cut to this size (default 64 KiB) */
  maxInputBytes?: number
  /** resources to free once the run is over */
  close?: () => Promise<void> | void
}

export interface Finding { input: string; error: string }

export interface HarnessResult {
  name: string
  what: string
  cases: number
  accepted: number
  refused: number
  findings: Finding[]
  seconds: number
  /** refusals by error code */
  codes: Record<string, number>
}

export interface RunLimits {
  cases: number
  seconds: number
  seed: number
  caseTimeoutMs?: number
  /** run at least this many cases even past `seconds` (a loaded machine still tests something) */
  minCases?: number
}

const DEFAULT_MAX_INPUT_BYTES = 64 * 1024
const DEFAULT_CASE_TIMEOUT_MS = 5_000
const MAX_MUTATIONS = 4
/** A harness stops collecting findings after this many: one bug tends to repeat. */
const MAX_FINDINGS = 20
const SHOWN_INPUT_BYTES = 256
const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x30, 0x39, 0x3a, 0x2d, 0x65, 0x69, 0x64, 0x6c, 0x2f, 0x2e, 0x25, 0x26, 0x3d, 0x0a, 0x20]
const INTERESTING_NUMBERS = ['0', '-1', '-0', '01', '4294967296', '9007199254740993', '99999999999999999999999', '1e3', 'NaN', '']

/** Deterministic PRNG (xorshift32), so a failing case can be found again from its seed. */
export function prng (seed: number): () => number {
  let x = (seed >>> 0) || 0x9e3779b9
  return () => {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    return x / 4294967296
  }
}

function pick<T> (random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]
}

/** One mutation of `input`; `others` feeds splices. */
export function mutate (input: Buffer, others: Buffer[], random: () => number): Buffer {
  const n = input.length
  const at = (): number => Math.floor(random() * (n + 1))
  switch (Math.floor(random() * 9)) {
    case 0: { // flip a bit
      if (n === 0) return Buffer.from([Math.floor(random() * 256)])
      const out = Buffer.from(input)
      out[Math.min(n - 1, at())] ^= 1 << Math.floor(random() * 8)
      return out
    }
    case 1: { // set a byte to a boundary value
      if (n === 0) return Buffer.from([pick(random, INTERESTING_BYTES)])
      const out = Buffer.from(input)
      out[Math.min(n - 1, at())] = pick(random, INTERESTING_BYTES)
      return out
    }
    case 2: { // insert random bytes
      const i = at()
      const bytes = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 16) }, () => Math.floor(random() * 256)))
      return Buffer.concat([input.subarray(0, i), bytes, input.subarray(i)])
    }
    case 3: { // delete a range
      const i = at()
      return Buffer.concat([input.subarray(0, i), input.subarray(Math.min(n, i + 1 + Math.floor(random() * 32)))])
    }
    case 4: { // duplicate a range
      const i = at()
      const j = Math.min(n, i + 1 + Math.floor(random() * 64))
      return Buffer.concat([input.subarray(0, j), input.subarray(i, j), input.subarray(j)])
    }
    case 5: { // splice another seed's tail
      const other = pick(random, others)
      return Buffer.concat([input.subarray(0, at()), other.subarray(Math.floor(random() * (other.length + 1)))])
    }
    case 6: { // replace a run of digits with a boundary number
      const text = input.toString('latin1')
      const digits = [...text.matchAll(/-?\d+/g)]
      if (digits.length === 0) return mutate(input, others, random)
      const m = pick(random, digits)
      return Buffer.from(text.slice(0, m.index) + pick(random, INTERESTING_NUMBERS) + text.slice((m.index ?? 0) + m[0].length), 'latin1')
    }
    case 7: // truncate
      return input.subarray(0, at())
    default: { // repeat a range many times (length bombs)
      const i = at()
      const j = Math.min(n, i + 1 + Math.floor(random() * 8))
      return Buffer.concat([input.subarray(0, j), Buffer.alloc((j - i) * Math.floor(random() * 512), input.subarray(i, j).length === 0 ? Buffer.from([0]) : input.subarray(i, j)), input.subarray(j)])
    }
  }
}

function codeOf (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === 'string' && (err as Error).name === 'SiError' ? code : undefined
}

function describe (err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 500) : String(err)
}

async function withDeadline (work: Promise<void> | void, ms: number): Promise<void> {
  if (work === undefined) return
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([work, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

export async function runHarness (h: Harness, limits: RunLimits): Promise<HarnessResult> {
  const random = prng(limits.seed)
  const seeds = await h.seeds()
  if (seeds.length === 0) throw new Error(`harness ${h.name} has no seeds`)
  // Untimed and uncounted: a parser's first run loads its modules (the extraction worker,
  // compiled from source under tsx, takes seconds), which is not what the run measures.
  await withDeadline(Promise.resolve(h.run(seeds[0])), limits.caseTimeoutMs ?? DEFAULT_CASE_TIMEOUT_MS).catch(() => {})
  const started = performance.now()
  const max = h.maxInputBytes ?? DEFAULT_MAX_INPUT_BYTES
  const result: HarnessResult = { name: h.name, what: h.what, cases: 0, accepted: 0, refused: 0, findings: [], seconds: 0, codes: {} }
  const deadline = started + limits.seconds * 1000
  try {
    while (result.cases < limits.cases && (performance.now() < deadline || result.cases < (limits.minCases ?? 0)) && result.findings.length < MAX_FINDINGS) {
      // The seeds themselves first: a harness whose valid inputs are refused is broken.
      let input = result.cases < seeds.length ? seeds[result.cases] : pick(random, seeds)
      if (result.cases >= seeds.length) {
        const rounds = 1 + Math.floor(random() * MAX_MUTATIONS)
        for (let i = 0; i < rounds; i++) input = mutate(input, seeds, random)
      }
      if (input.length > max) input = input.subarray(0, max)
      result.cases++
      try {
        await withDeadline(h.run(input), limits.caseTimeoutMs ?? DEFAULT_CASE_TIMEOUT_MS)
        result.accepted++
      } catch (err) {
        const code = codeOf(err)
        const isSeed = result.cases <= seeds.length
        if (!isSeed && code !== undefined && h.expectedCodes.includes(code)) {
          result.refused++
          result.codes[code] = (result.codes[code] ?? 0) + 1
        } else {
          result.findings.push({ input: input.subarray(0, SHOWN_INPUT_BYTES).toString('base64'), error: `${isSeed ? 'a valid seed was refused: ' : ''}${describe(err)}` })
        }
      }
    }
  } finally {
    try {
      await h.close?.()
    } catch (err) {
      result.findings.push({ input: '(after the run)', error: describe(err) })
    }
  }
  result.seconds = (performance.now() - started) / 1000
  return result
}
