// The short fuzz run of `make test`: every parser harness for a few seconds with a fixed
// seed (`make fuzz` runs them for a minute each). Nothing but a typed refusal may come out
// of a parser, the archive jail holds, and the HTTP server answers to the end.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SiError } from '../src/errors.ts'
import { mutate, prng, runHarness, type Harness } from '../scripts/fuzz/engine.ts'
import { allHarnesses } from '../scripts/fuzz/harnesses.ts'

const SECONDS_PER_HARNESS = 2.5
/** Cases every harness runs, however slow the machine (the extraction harness starts a worker per case). */
const MIN_CASES = 40
const SEED = 20261203

for (const harness of allHarnesses()) {
  test(`fuzz ${harness.name}: ${harness.what}`, { timeout: 60_000 }, async () => {
    const r = await runHarness(harness, { cases: 1_000_000, seconds: SECONDS_PER_HARNESS, seed: SEED, minCases: MIN_CASES })
    assert.deepEqual(r.findings, [], `${r.findings.length} finding(s)`)
    assert.ok(r.cases >= MIN_CASES, `only ${r.cases} cases ran`)
    assert.ok(r.accepted > 0, 'no case was accepted: the seeds do not reach the parser')
    if (harness.expectedCodes.length > 0) assert.ok(r.refused > 0, 'no mutated case was refused')
  })
}

test('the fuzz engine reports a parser that throws anything but its typed refusal, and one that hangs', async () => {
  const crashing: Harness = {
    name: 'planted',
    what: 'a parser with a planted bug',
    expectedCodes: ['ERR_INVALID_ARGUMENT'],
    seeds: () => [Buffer.from('abcdefgh')],
    run: input => {
      if (input.includes(0xff)) throw new TypeError('planted')
      if (input.length !== 8) throw new SiError('ERR_INVALID_ARGUMENT', 'wrong length')
    }
  }
  const r = await runHarness(crashing, { cases: 20_000, seconds: 10, seed: 7 })
  assert.ok(r.findings.some(f => /TypeError: planted/.test(f.error)), 'the planted crash is found')
  assert.ok(r.refused > 0 && r.accepted > 0)
  const hanging: Harness = { ...crashing, name: 'hang', run: input => input.includes(0x00) ? new Promise(() => {}) : undefined }
  const h = await runHarness(hanging, { cases: 20_000, seconds: 10, seed: 7, caseTimeoutMs: 50 })
  assert.ok(h.findings.some(f => /no answer in 50 ms/.test(f.error)))
})

test('mutations are repeatable from their seed and change the input', () => {
  const seed = Buffer.from('d4:spami42ee')
  const a = prng(3)
  const b = prng(3)
  const one = Array.from({ length: 50 }, () => mutate(seed, [seed], a).toString('hex'))
  const two = Array.from({ length: 50 }, () => mutate(seed, [seed], b).toString('hex'))
  assert.deepEqual(one, two)
  assert.ok(one.filter(x => x !== seed.toString('hex')).length > 40)
})
