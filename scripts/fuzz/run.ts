// `make fuzz`: every parser harness for a bounded time, a table of cases and findings,
// and the results as JSON (dist/fuzz-report.json). Exit status 1 when anything was found.
//   node --import tsx scripts/fuzz/run.ts [--seconds S] [--cases N] [--seed N] [--only NAMES] [--out FILE]
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { listOption, option } from '../../src/config/options.ts'
import { decimal, integer, nonEmpty } from '../../src/config/values.ts'
import { noExtraPositionals, readCommandLine } from '../../src/config/command-line.ts'
import { commandHelp } from '../../src/config/help.ts'
import { describeError } from '../../src/errors.ts'
import { runHarness, type HarnessResult } from './engine.ts'
import { allHarnesses } from './harnesses.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const OPTIONS = {
  seconds: option({ flag: 'seconds', arg: 'S', help: 'time per harness', default: 60, parse: decimal(0.1, 86_400) }),
  cases: option({ flag: 'cases', arg: 'N', help: 'cases per harness at most', default: 1_000_000, parse: integer(1, 1e9) }),
  seed: option({ flag: 'seed', arg: 'N', help: 'PRNG seed: the same seed gives the same cases', default: 1, parse: integer(0, 2 ** 32 - 1) }),
  only: listOption({ flag: 'only', arg: 'NAMES', help: 'run only these harnesses (comma-separated)', parseItem: nonEmpty('a harness name') }),
  out: option({ flag: 'out', arg: 'FILE', help: 'results as JSON', default: join(ROOT, 'dist/fuzz-report.json'), defaultText: 'dist/fuzz-report.json', parse: nonEmpty('a file') })
}
const USAGE = commandHelp(['node --import tsx scripts/fuzz/run.ts [options]   (make fuzz)'], OPTIONS, {
  intro: 'Mutation fuzzing of every parser that reads network or disk input; see scripts/fuzz/harnesses.ts.'
})

export function formatTable (results: HarnessResult[]): string {
  const rows = [['harness', 'cases', 'accepted', 'refused', 'findings', 's', 'what'], ...results.map(r => [r.name, String(r.cases), String(r.accepted), String(r.refused), String(r.findings.length), r.seconds.toFixed(1), r.what])]
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n'
}

async function main (argv: string[]): Promise<number> {
  const { values: o, positional, help } = readCommandLine(argv, OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  const harnesses = allHarnesses().filter(h => o.only.length === 0 || o.only.includes(h.name))
  const results: HarnessResult[] = []
  for (const h of harnesses) {
    process.stderr.write(`fuzz: ${h.name} for ${o.seconds} s\n`)
    results.push(await runHarness(h, { cases: o.cases, seconds: o.seconds, seed: o.seed }))
  }
  // Harnesses not run still hold scratch space or a server: close them.
  for (const h of allHarnesses().filter(x => !harnesses.some(y => y.name === x.name))) await h.close?.()
  process.stdout.write(formatTable(results))
  for (const r of results) for (const f of r.findings) process.stdout.write(`finding in ${r.name}: ${f.error}\n  input (base64): ${f.input}\n`)
  mkdirSync(dirname(o.out), { recursive: true })
  writeFileSync(o.out, JSON.stringify({ seed: o.seed, secondsPerHarness: o.seconds, results }, null, 2) + '\n')
  return results.some(r => r.findings.length > 0) ? 1 : 0
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
    process.stderr.write(`fuzz: error: ${describeError(err)}\n`)
    process.exitCode = 2
  })
}
