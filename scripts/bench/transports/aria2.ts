// aria2c in the agent's place, in our server's swarm: the torrent is taken with
// ?webseed=0 so aria2c uses BitTorrent only (its peers and our seeder). When its download
// is complete and checked, a hook extracts the payload with tar and prints a marker line;
// aria2c then keeps seeding, as our agents do under the swarm-aware policy, until the
// harness stops it once every node holds the image.
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { hasTool, run } from '../exec.ts'
import type { Transport } from './types.ts'

export const VERIFIED_MARKER = 'SIBENCH-VERIFIED'
const TORRENT_FILE = 'bt-only.torrent'
const HOOK_FILE = 'aria2-done.sh'
/** aria2c gives up when nothing arrives for this long. */
const STOP_TIMEOUT_S = 120
/** Longest it seeds; the harness stops it earlier, when every node is done. */
const SEED_MINUTES = 10

export function aria2Transport (): Transport {
  return {
    id: 'aria2',
    label: 'aria2c (BitTorrent only, torrent ?webseed=0)',
    needsImageServer: true,
    agentEvents: false,
    verifiedMarker: VERIFIED_MARKER,
    unavailable: async () => (await hasTool('aria2c')) ? undefined : 'aria2c missing (Debian package aria2)',
    startServerSide: async ctx => {
      const url = `${ctx.serverUrl}/images/${ctx.image.ref.replace('@', '/')}/image.torrent?webseed=0`
      await run('ip', ['netns', 'exec', ctx.cluster.server.ns, 'curl', '-sf', '-o', join(ctx.workDir, TORRENT_FILE), url])
      // aria2c calls the hook with (gid, file count, first file's path).
      const hook = join(ctx.workDir, HOOK_FILE)
      await writeFile(hook, `#!/bin/sh\ntar --numeric-owner -xpf "$3" -C "$SIBENCH_TARGET" && echo ${VERIFIED_MARKER}\n`)
      await chmod(hook, 0o755)
      return { stop: async () => {} }
    },
    nodeCommand: (ctx, node, target) => [
      'env', `SIBENCH_TARGET=${target}`,
      'aria2c', `--dir=${target}.staging`, `--seed-time=${SEED_MINUTES}`, '--enable-dht=false', '--enable-dht6=false',
      '--bt-enable-lpd=false', '--enable-peer-exchange=true', '--file-allocation=none',
      // No progress readout: aria2c flushes it in 4 KiB blocks, which can split a line
      // around the hook's marker (slow nodes then looked stalled until aria2c exited).
      '--summary-interval=0', '--show-console-readout=false', '--console-log-level=error', '--download-result=hide',
      `--bt-stop-timeout=${STOP_TIMEOUT_S}`, '--allow-overwrite=true', '--auto-file-renaming=false',
      `--on-bt-download-complete=${join(ctx.workDir, HOOK_FILE)}`,
      ...(process.env.SI_ARIA2_LOGS !== undefined ? [`--log=${process.env.SI_ARIA2_LOGS}/${node.name}.log`, '--log-level=info'] : []),
      join(ctx.workDir, TORRENT_FILE)
    ]
  }
}
