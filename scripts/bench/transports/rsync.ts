// rsync: a daemon on the server host exporting the image tree, `rsync -a` on each node
// (SystemImager's default transport).
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../../../src/errors.ts'
import { SERVER_ADDRESS } from '../cluster.ts'
import { hasTool, run, sleep, spawnTracked, stopChild, tail } from '../exec.ts'
import type { Transport } from './types.ts'

export const RSYNC_PORT = 873
const MODULE = 'image'
const READY_TIMEOUT_MS = 10_000
const READY_POLL_MS = 200

export function rsyncTransport (): Transport {
  return {
    id: 'rsync',
    label: 'rsync daemon',
    needsImageServer: false,
    agentEvents: false,
    unavailable: async () => (await hasTool('rsync')) ? undefined : 'rsync missing (Debian package rsync)',
    startServerSide: async ctx => {
      const conf = join(ctx.workDir, 'rsyncd.conf')
      await writeFile(conf, [
        'use chroot = no',
        'max connections = 0',
        `log file = ${join(ctx.workDir, 'rsyncd.log')}`,
        `[${MODULE}]`,
        `  path = ${ctx.image.treeDir}`,
        '  read only = yes',
        '  uid = 0',
        '  gid = 0',
        ''
      ].join('\n'))
      const ns = ctx.cluster.server.ns
      const child = spawnTracked('ip', ['netns', 'exec', ns, 'rsync', '--daemon', '--no-detach', `--config=${conf}`, `--address=${SERVER_ADDRESS}`, `--port=${RSYNC_PORT}`])
      const stderr = tail(child.stderr)
      const deadline = Date.now() + READY_TIMEOUT_MS
      for (;;) {
        const listing = await run('ip', ['netns', 'exec', ns, 'rsync', `rsync://${SERVER_ADDRESS}:${RSYNC_PORT}/`], { allowFail: true, timeoutMs: READY_TIMEOUT_MS })
        if (listing.includes(MODULE)) break
        if (Date.now() > deadline || child.exitCode !== null) {
          await stopChild(child)
          throw new SiError('ERR_BENCH', `rsync daemon did not come up: ${stderr().trim()}`)
        }
        await sleep(READY_POLL_MS)
      }
      return { stop: async () => { await stopChild(child) } }
    },
    nodeCommand: (_ctx, _node, target) => ['rsync', '-a', '--numeric-ids', '--whole-file', `rsync://${SERVER_ADDRESS}:${RSYNC_PORT}/${MODULE}/`, `${target}/`]
  }
}
