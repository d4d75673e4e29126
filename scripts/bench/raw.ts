// Raw speed: one client downloading a large image from our seeder over unshaped
// loopback, inside a namespace of its own. Our agent (BitTorrent, and HTTP for
// reference) against aria2c in the same place.
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describeError } from '../../src/errors.ts'
import { exitOf, run, spawnTracked, stopChild, tail } from './exec.ts'
import { startImageServer } from './image-server.ts'
import type { BenchImage } from './image.ts'
import { cpuBetween, readCpu, round } from './metrics.ts'
import { createNamespace, deleteNamespace, nsPrefixFor } from './netns.ts'

const LOOPBACK = '127.0.0.1'
const CLIENT_TIMEOUT_MS = 15 * 60_000

export interface RawResult {
  label: string
  bytes: number
  /** until the payload was verified (agent: download complete; aria2c: exit) */
  downloadSeconds: number
  /** until the image was extracted as well */
  totalSeconds: number
  cpuMean: number
  error?: string
}

export async function rawRace (agentBin: string, serverBin: string, repo: string, image: BenchImage, workDir: string, log: (s: string) => void): Promise<RawResult[]> {
  const ns = `${nsPrefixFor()}raw`
  await createNamespace(ns)
  const results: RawResult[] = []
  try {
    const server = await startImageServer(serverBin, ns, repo, [], LOOPBACK)
    try {
      for (const transport of ['bt', 'http']) {
        log(`raw: si-agent --transport ${transport}`)
        results.push(await timed(`si-agent --transport ${transport}`, image.size, async () => {
          const target = join(workDir, `agent-${transport}`)
          await mkdir(target, { recursive: true })
          const child = spawnTracked('ip', ['netns', 'exec', ns, agentBin, 'deploy', '--server', server.url, '--image', image.ref, '--target', target,
            '--staging', `${target}.staging`, '--transport', transport, '--seed-wait', 'none', '--json', '--no-report'])
          const err = tail(child.stderr)
          let done: { downloadSeconds: number; seconds: number } | undefined
          createInterface({ input: child.stdout! }).on('line', line => {
            try {
              const ev = JSON.parse(line) as { type: string; downloadSeconds: number; seconds: number; message?: string }
              if (ev.type === 'done') done = ev
            } catch { /* not an event */ }
          })
          const code = await withTimeout(exitOf(child), () => stopChild(child))
          await rm(target, { recursive: true, force: true })
          await rm(`${target}.staging`, { recursive: true, force: true })
          if (code !== 0 || done === undefined) throw new Error(`exit ${code}: ${err().trim().slice(-300)}`)
          return { download: done.downloadSeconds, total: done.seconds }
        }))
      }
      log('raw: aria2c')
      results.push(await timed('aria2c (BitTorrent only)', image.size, async () => {
        const stage = join(workDir, 'aria2')
        const target = join(workDir, 'aria2-target')
        await mkdir(target, { recursive: true })
        const torrent = join(workDir, 'raw.torrent')
        await run('ip', ['netns', 'exec', ns, 'curl', '-sf', '-o', torrent, `${server.url}/images/${image.ref.replace('@', '/')}/image.torrent?webseed=0`])
        const started = performance.now()
        await run('ip', ['netns', 'exec', ns, 'aria2c', `--dir=${stage}`, '--seed-time=0', '--enable-dht=false', '--enable-dht6=false', '--bt-enable-lpd=false',
          '--file-allocation=none', '--summary-interval=0', '--console-log-level=error', '--download-result=hide', torrent], { timeoutMs: CLIENT_TIMEOUT_MS })
        const download = (performance.now() - started) / 1000
        await run('tar', ['--numeric-owner', '-xpf', join(stage, image.payloadName), '-C', target], { timeoutMs: CLIENT_TIMEOUT_MS })
        const total = (performance.now() - started) / 1000
        await rm(stage, { recursive: true, force: true })
        await rm(target, { recursive: true, force: true })
        return { download, total }
      }))
    } finally {
      await server.stop()
    }
  } finally {
    await deleteNamespace(ns)
  }
  return results
}

async function timed (label: string, bytes: number, fn: () => Promise<{ download: number; total: number }>): Promise<RawResult> {
  const cpu0 = readCpu()
  try {
    const r = await fn()
    return { label, bytes, downloadSeconds: round(r.download, 2), totalSeconds: round(r.total, 2), cpuMean: round(cpuBetween(cpu0, readCpu()), 3) }
  } catch (err) {
    return { label, bytes, downloadSeconds: NaN, totalSeconds: NaN, cpuMean: round(cpuBetween(cpu0, readCpu()), 3), error: describeError(err) }
  }
}

async function withTimeout<T> (p: Promise<T>, onTimeout: () => Promise<void>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { void onTimeout().then(() => reject(new Error(`no result in ${CLIENT_TIMEOUT_MS / 1000} s`))) }, CLIENT_TIMEOUT_MS)
  })
  try { return await Promise.race([p, t]) } finally { clearTimeout(timer) }
}
