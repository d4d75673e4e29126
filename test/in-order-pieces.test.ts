// A node whose only peers are seeds has nobody to share pieces with, so it takes them in
// order: extraction, which reads the payload in order, then runs alongside the download
// instead of waiting for piece 0 wherever a random start put it (docs/ARCHITECTURE.md).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PeerListener } from '../src/swarm/peer-listener.ts'
import { PieceStore, type PieceLayout } from '../src/swarm/piece-store.ts'
import { Swarm } from '../src/swarm/swarm.ts'
import { DEFAULT_SWARM_CONFIG } from '../src/swarm/config.ts'

const PIECE_BYTES = 32 * 1024
const PIECES = 160
/** Pieces verified before piece 0 at most: the random start's and those in flight with them. */
const BEFORE_FIRST_MAX = 3 * DEFAULT_SWARM_CONFIG.randomFirstPieces
/**
 * Pieces held beyond the complete prefix, at worst: the random start's, and a few
 * verified a moment before a lower one (their writes finish in any order). In a random
 * order it is most of the payload for most of the download.
 */
const AHEAD_OF_PREFIX_MAX = PIECES / 4

test('a leecher whose only peer is a seed verifies pieces in order after its random start, piece 0 among the first', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'si-in-order-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const payload = randomBytes(PIECE_BYTES * PIECES - 1000)
  const layout: PieceLayout = {
    length: payload.length,
    pieceLength: PIECE_BYTES,
    pieceCount: PIECES,
    pieceHashes: Array.from({ length: PIECES }, (_, i) => createHash('sha1').update(payload.subarray(i * PIECE_BYTES, (i + 1) * PIECE_BYTES)).digest())
  }
  const infoHash = createHash('sha1').update(payload).digest()
  await writeFile(join(dir, 'seed.tar'), payload)

  const seedListener = new PeerListener()
  await seedListener.start('127.0.0.1', 0)
  const leechListener = new PeerListener()
  await leechListener.start('127.0.0.1', 0)
  const seedStore = await PieceStore.openComplete(join(dir, 'seed.tar'), layout)
  const leechStore = await PieceStore.createStaging(join(dir, 'leech.tar'), layout)
  const seed = new Swarm({ infoHash, peerId: Buffer.from('-SI0000-seedseedseed'), store: seedStore, listener: seedListener, announceUrls: [] })
  const leech = new Swarm({ infoHash, peerId: Buffer.from('-SI0000-leechleechle'), store: leechStore, listener: leechListener, announceUrls: [] })
  t.after(async () => {
    await leech.stop()
    await seed.stop()
    await Promise.all([leechListener.stop(), seedListener.stop()])
    await Promise.all([leechStore.close(), seedStore.close()])
  })
  const order: number[] = []
  leech.on('verified', index => order.push(index))
  seed.start()
  leech.start()
  leech.addPeerAddress({ host: '127.0.0.1', port: seedListener.port })
  await once(leech, 'complete')

  assert.equal(order.length, PIECES)
  const held = new Uint8Array(PIECES)
  let prefix = 0
  let worstAhead = 0
  for (const [i, index] of order.entries()) {
    held[index] = 1
    while (prefix < PIECES && held[prefix] === 1) prefix++
    worstAhead = Math.max(worstAhead, i + 1 - prefix)
  }
  assert.ok(worstAhead <= AHEAD_OF_PREFIX_MAX, `up to ${worstAhead} pieces held beyond the complete prefix: ${order.join(' ')}`)
  assert.ok(order.indexOf(0) <= BEFORE_FIRST_MAX, `piece 0 verified ${order.indexOf(0) + 1}th: ${order.join(' ')}`)
})
