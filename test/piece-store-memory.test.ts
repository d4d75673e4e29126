// The piece store's memory is bounded in bytes, whatever the piece size and however far
// the download runs ahead of extraction: the in-order reader (extraction's input) holds
// at most its read-ahead budget beyond the chunk its consumer works on, in chunks no
// larger than its chunk size; the upload cache holds at most its bytes of pieces.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { PieceStore, type PieceLayout } from '../src/swarm/piece-store.ts'
import type { PieceStoreConfig } from '../src/swarm/config.ts'

const KIB = 1024
/** Large pieces against a small chunk: the store must not hold a piece's worth per read. */
const PIECE = 256 * KIB
const PIECES = 9
const LENGTH = PIECE * (PIECES - 1) + 100 * KIB
const CONFIG: PieceStoreConfig = { inOrderChunkBytes: 64 * KIB, inOrderAheadBytes: 128 * KIB, readCacheBytes: 2 * PIECE }

let dir: string
let payload: Buffer
let layout: PieceLayout

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'si-store-memory-'))
  payload = randomBytes(LENGTH)
  const pieceHashes = Array.from({ length: PIECES }, (_, i) => createHash('sha1').update(payload.subarray(i * PIECE, (i + 1) * PIECE)).digest())
  layout = { length: LENGTH, pieceLength: PIECE, pieceCount: PIECES, pieceHashes }
})

after(async () => { await rm(dir, { recursive: true, force: true }) })

test('a slow consumer of a complete payload: chunks of the chunk size, never more than the read-ahead budget held, every byte in order', async () => {
  const file = join(dir, 'complete.tar')
  await writeFile(file, payload)
  const store = await PieceStore.openComplete(file, layout, CONFIG)
  try {
    const chunks: Buffer[] = []
    let mostAhead = 0
    for await (const chunk of store.readInOrder()) {
      assert.ok(chunk.length <= CONFIG.inOrderChunkBytes, `a chunk of ${chunk.length} bytes`)
      // The reads ahead run while this consumer dawdles: the budget is reached, never passed.
      await sleep(5)
      mostAhead = Math.max(mostAhead, store.readAheadBytes)
      assert.ok(store.readAheadBytes <= CONFIG.inOrderAheadBytes, `${store.readAheadBytes} bytes read ahead`)
      chunks.push(chunk)
    }
    assert.equal(mostAhead, CONFIG.inOrderAheadBytes)
    assert.equal(store.readAheadBytes, 0)
    assert.ok(Buffer.concat(chunks).equals(payload))
  } finally {
    await store.close()
  }
})

test('pieces verified out of order, far ahead of the consumer: it gets them in order, holding only its budget; the upload cache holds only its bytes', async () => {
  const store = await PieceStore.createStaging(join(dir, `staging-${randomBytes(4).toString('hex')}.tar`), layout, CONFIG)
  try {
    const reader = store.readInOrder()
    const first = reader.next()
    // Every piece but the first arrives (last to second) before the consumer takes a byte.
    for (const i of [...Array(PIECES).keys()].reverse()) {
      if (i === 0) continue
      const piece = payload.subarray(i * PIECE, (i + 1) * PIECE)
      store.writeBlock(i, 0, piece)
      assert.equal((await store.commit(i)).verified, true)
      assert.ok(store.cachedBytes <= CONFIG.readCacheBytes, `upload cache of ${store.cachedBytes} bytes`)
    }
    assert.equal(store.readAheadBytes, 0, 'nothing is read before the first piece is verified')
    store.writeBlock(0, 0, payload.subarray(0, PIECE))
    assert.equal((await store.commit(0)).verified, true)
    const chunks = [(await first).value as Buffer]
    for (;;) {
      await sleep(2)
      assert.ok(store.readAheadBytes <= CONFIG.inOrderAheadBytes, `${store.readAheadBytes} bytes read ahead`)
      const next = await reader.next()
      if (next.done === true) break
      chunks.push(next.value)
    }
    assert.ok(Buffer.concat(chunks).equals(payload))
  } finally {
    await store.close()
  }
})

test('a consumer that stops early releases what was read ahead', async () => {
  const file = join(dir, 'stopped.tar')
  await writeFile(file, payload)
  const store = await PieceStore.openComplete(file, layout, CONFIG)
  try {
    for await (const chunk of store.readInOrder()) {
      assert.ok(chunk.length > 0)
      await sleep(5)
      assert.ok(store.readAheadBytes > 0)
      break
    }
    assert.equal(store.readAheadBytes, 0)
  } finally {
    await store.close()
  }
})

test('pieces verified and dropped from the upload cache, none lent: their buffers are reused, a handful made for 64 pieces; a lent piece keeps its bytes', async () => {
  const pieces = 64
  const bigLayout: PieceLayout = {
    length: PIECE * pieces,
    pieceLength: PIECE,
    pieceCount: pieces,
    pieceHashes: Array.from({ length: pieces }, (_, i) => createHash('sha1').update(pieceOf(i)).digest())
  }
  const store = await PieceStore.createStaging(join(dir, `staging-${randomBytes(4).toString('hex')}.tar`), bigLayout, CONFIG)
  try {
    let lent: Buffer | undefined
    for (let i = 0; i < pieces; i++) {
      store.writeBlock(i, 0, pieceOf(i))
      assert.equal((await store.commit(i)).verified, true)
      if (i === 3) lent = await store.readBlock(3, 0, PIECE)
    }
    // The cache's pieces, the one being assembled, the lent one (and one spare): 64 without reuse.
    const bound = CONFIG.readCacheBytes / PIECE + 3
    assert.ok(store.pieceBuffersMade <= bound, `${store.pieceBuffersMade} piece buffers made for ${pieces} pieces (bound ${bound})`)
    assert.ok(lent !== undefined && lent.equals(pieceOf(3)), 'the lent piece was not reused')
    for (const i of [0, pieces / 2, pieces - 1]) assert.ok((await store.readBlock(i, 0, PIECE)).equals(pieceOf(i)), `piece ${i} on disk`)
  } finally {
    await store.close()
  }
})

/** Piece i of a payload whose every piece differs: a reused buffer left stale would show. */
function pieceOf (i: number): Buffer {
  return Buffer.alloc(PIECE, i + 1)
}

test('a consumer that gives each chunk back: readInOrder reads into a handful of buffers for the whole payload, every byte in order', async () => {
  const file = join(dir, 'released.tar')
  await writeFile(file, payload)
  const store = await PieceStore.openComplete(file, layout, CONFIG)
  try {
    const hash = createHash('sha1')
    let chunks = 0
    for await (const chunk of store.readInOrder()) {
      hash.update(chunk)
      chunks++
      store.releaseChunk(chunk)
    }
    assert.ok(hash.digest().equals(createHash('sha1').update(payload).digest()))
    // The read-ahead budget's chunks, the one the consumer holds, one spare: not one per chunk.
    const bound = CONFIG.inOrderAheadBytes / CONFIG.inOrderChunkBytes + 2
    assert.ok(chunks > 4 * bound, `${chunks} chunks`)
    assert.ok(store.chunksMade <= bound, `${store.chunksMade} buffers for ${chunks} chunks (bound ${bound})`)
  } finally {
    await store.close()
  }
})
