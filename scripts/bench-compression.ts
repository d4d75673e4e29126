// Compression figures for docs/FIDELITY.md: for a tree (default: the cached debootstrap
// minbase), the size and packing time of each compression, and the agent's
// decompression throughput (decompressed(): zlib for gzip, the zstd binary for zstd).
//   node --import tsx scripts/bench-compression.ts [TREE]
import { createReadStream } from 'node:fs'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { COMPRESSIONS, compressToFile, decompressed } from '../src/image/compression.ts'
import { packDirectory } from '../src/image/pack.ts'

const tree = process.argv[2] ?? '/var/cache/swarmimager-test/bookworm-minbase'
const work = await mkdtemp(join(tmpdir(), 'si-bench-compression-'))
try {
  let tarBytes = 0
  for (const c of COMPRESSIONS) {
    const file = join(work, `image.${c}`)
    const started = process.hrtime.bigint()
    const out = compressToFile(c, file)
    const [packed] = await Promise.all([packDirectory(tree, out.input), out.done])
    const packS = Number(process.hrtime.bigint() - started) / 1e9
    tarBytes = packed.bytes
    const size = (await stat(file)).size
    const t0 = process.hrtime.bigint()
    let bytes = 0
    for await (const chunk of decompressed(createReadStream(file, { highWaterMark: 1024 * 1024 }))) bytes += chunk.length
    const readS = Number(process.hrtime.bigint() - t0) / 1e9
    console.log(`${c.padEnd(5)} size ${(size / 1e6).toFixed(1)} MB (${(100 * size / tarBytes).toFixed(0)}% of ${(tarBytes / 1e6).toFixed(1)} MB tar)  pack ${packS.toFixed(2)} s (${(tarBytes / 1e6 / packS).toFixed(0)} MB/s)  decompress ${readS.toFixed(2)} s (${(bytes / 1e6 / readS).toFixed(0)} MB/s of tar)`)
  }
} finally {
  await rm(work, { recursive: true, force: true })
}
