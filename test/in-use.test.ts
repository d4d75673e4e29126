// The record of versions in use that a running si-server leaves in the repository for
// `si-server image rm` (another process): renewed while the server runs, removed when it
// stops, and ignored once stale (a server killed without cleaning up).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IN_USE_DIR, InUseRecorder, fetchersOf, readInUse, type VersionInUse } from '../src/server/in-use.ts'

test('a running server\'s record names the fetchers of each version; it is gone once the server stops, and a stale one is ignored', async () => {
  const repo = await mkdtemp(join(tmpdir(), 'si-in-use-'))
  try {
    let inUse: VersionInUse[] = [{ name: 'golden', version: 1, infoHash: 'a'.repeat(40), fetchers: ['10.0.0.5:6881'] }]
    const warnings: Error[] = []
    const recorder = new InUseRecorder(repo, () => inUse, err => warnings.push(err), { writeIntervalMs: 50 })
    await recorder.start()
    assert.deepEqual(fetchersOf(await readInUse(repo), 'golden', 1).peers, ['10.0.0.5:6881'])
    assert.deepEqual(fetchersOf(await readInUse(repo), 'golden', 2).peers, [])
    inUse = []
    await recorder.write()
    assert.deepEqual(fetchersOf(await readInUse(repo), 'golden', 1).peers, [], 'renewed: nobody fetches it any more')
    await recorder.stop()
    assert.deepEqual(await readdir(join(repo, IN_USE_DIR)), [])
    assert.deepEqual(warnings, [])

    // A record left by a server that died is past its validity: it protects nothing.
    const stale = { server: 'gone:1', writtenAt: 0, validUntil: Date.now() - 1, versions: [{ name: 'golden', version: 1, infoHash: 'a'.repeat(40), fetchers: ['10.0.0.6:6881'] }] }
    await writeFile(join(repo, IN_USE_DIR, 'gone-1.json'), JSON.stringify(stale))
    await writeFile(join(repo, IN_USE_DIR, 'garbage.json'), '{not json')
    assert.deepEqual(await readInUse(repo), [])
  } finally {
    await rm(repo, { recursive: true, force: true })
  }
})
