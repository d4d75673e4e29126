// Compression figures for docs/FIDELITY.md: for a tree (default: the cached debootstrap
// minbase), the size and packing time of each compression and zstd level, and the
// agent's decompression throughput (decompressed(), Node's zlib). With --extract, also
// the agent's whole path from the payload file: decompression and extraction with
// every attribute (needs root). Runs are interleaved, so a noisy machine slows every
// configuration alike; each figure is the range over the runs.
//   node --import tsx scripts/bench-compression.ts [--runs N] [--zstd-levels 1,3,9] [--extract] [TREE]
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { listOption, option, switchOption } from '../src/config/options.ts'
import { integer } from '../src/config/values.ts'
import { noExtraPositionals, readCommandLine, type CommandLine } from '../src/config/command-line.ts'
import { describeError } from '../src/errors.ts'
import { commandHelp } from '../src/config/help.ts'
import { GZIP_LEVEL, ZSTD_LEVEL, compressToFile, decompressed, type Compression } from '../src/image/compression.ts'
import { packDirectory } from '../src/image/pack.ts'
import { extractTar } from '../src/deploy/extract.ts'

const DEFAULT_TREE = '/var/cache/swarmimager-test/bookworm-minbase'
const DEFAULT_RUNS = 3
const READ_CHUNK_BYTES = 1024 * 1024

interface Config { compression: Compression; level?: number; label: string }
interface Figures { size: number; packS: number[]; readS: number[]; extractS: number[] }

const OPTIONS = {
  runs: option({ flag: 'runs', arg: 'N', help: 'runs of every configuration, interleaved', default: DEFAULT_RUNS, parse: integer(1, 100) }),
  zstdLevels: listOption({ flag: 'zstd-levels', arg: 'N,N,...', help: `zstd levels to compare (default ${ZSTD_LEVEL}, the packer's)`, parseItem: integer(1, 22) }),
  extract: switchOption({ flag: 'extract', help: 'also time decompression with extraction of every attribute (needs root)' })
}
const USAGE = commandHelp(['node --import tsx scripts/bench-compression.ts [options] [TREE]'], OPTIONS, {
  intro: `Size and packing time of each compression of TREE (default ${DEFAULT_TREE}), and the agent's
decompression throughput; runs interleaved, each figure the range over the runs.`
})
function commandLine (): CommandLine<typeof OPTIONS> {
  try {
    const line = readCommandLine(process.argv.slice(2), OPTIONS)
    noExtraPositionals(line.positional, 1, USAGE)
    return line
  } catch (err) {
    process.stderr.write(`bench-compression: ${describeError(err)}\n`)
    process.exit(2)
  }
}
const { values: o, positional, help } = commandLine()
if (help) { process.stdout.write(USAGE); process.exit(0) }
const tree = positional[0] ?? DEFAULT_TREE
const runs = o.runs
const zstdLevels = o.zstdLevels.length === 0 ? [ZSTD_LEVEL] : o.zstdLevels
const args = { extract: o.extract }
const configs: Config[] = [
  { compression: 'none', label: 'none' },
  { compression: 'gzip', label: `gzip -${GZIP_LEVEL}` },
  ...zstdLevels.map(level => ({ compression: 'zstd' as const, level, label: `zstd -${level}` }))
]

const seconds = (since: bigint): number => Number(process.hrtime.bigint() - since) / 1e9
const range = (values: number[], f: (v: number) => string): string => {
  const lo = f(Math.min(...values))
  const hi = f(Math.max(...values))
  return lo === hi ? lo : `${lo}–${hi}`
}

const work = await mkdtemp(join(tmpdir(), 'si-bench-compression-'))
try {
  let tarBytes = 0
  const figures = new Map<Config, Figures>(configs.map(c => [c, { size: 0, packS: [], readS: [], extractS: [] }]))
  for (let run = 1; run <= runs; run++) {
    for (const config of configs) {
      const f = figures.get(config)!
      const file = join(work, 'payload')
      let started = process.hrtime.bigint()
      const out = compressToFile(config.compression, file, { level: config.level })
      const [packed] = await Promise.all([packDirectory(tree, out.input), out.done])
      f.packS.push(seconds(started))
      tarBytes = packed.bytes
      f.size = (await stat(file)).size

      started = process.hrtime.bigint()
      for await (const chunk of decompressed(createReadStream(file, { highWaterMark: READ_CHUNK_BYTES }))) void chunk
      f.readS.push(seconds(started))

      if (args.extract === true) {
        const target = join(work, 'target')
        await mkdir(target)
        started = process.hrtime.bigint()
        await extractTar(createReadStream(file, { highWaterMark: READ_CHUNK_BYTES }), target)
        f.extractS.push(seconds(started))
        await rm(target, { recursive: true, force: true })
      }
      await rm(file)
      console.error(`run ${run}/${runs} ${config.label}: pack ${f.packS.at(-1)!.toFixed(2)} s, decompress ${f.readS.at(-1)!.toFixed(2)} s${args.extract === true ? `, extract ${f.extractS.at(-1)!.toFixed(2)} s` : ''}`)
    }
  }
  const mbPerS = (s: number): number => tarBytes / 1e6 / s
  console.log(`${tree}: ${(tarBytes / 1e6).toFixed(1)} MB tar, ${runs} runs, Node ${process.version}`)
  console.log(`| | size | pack s (MB/s of tar) | decompress MB/s of tar |${args.extract === true ? ' decompress + extract s |' : ''}`)
  console.log(`| --- | --- | --- | --- |${args.extract === true ? ' --- |' : ''}`)
  for (const [config, f] of figures) {
    const decompress = config.compression === 'none' ? '—' : range(f.readS.map(mbPerS), v => v.toFixed(0))
    console.log(`| ${config.label} | ${(f.size / 1e6).toFixed(1)} MB (${(100 * f.size / tarBytes).toFixed(0)}%) | ${range(f.packS, v => v.toFixed(1))} (${range(f.packS.map(mbPerS), v => v.toFixed(0))}) | ${decompress} |${args.extract === true ? ` ${range(f.extractS, v => v.toFixed(1))} |` : ''}`)
  }
} finally {
  await rm(work, { recursive: true, force: true })
}
