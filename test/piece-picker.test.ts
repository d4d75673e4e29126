import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PiecePicker, BLOCK_SIZE } from '../src/swarm/piece-picker.ts'
import { DEFAULT_SWARM_CONFIG } from '../src/swarm/config.ts'

const { randomFirstPieces } = DEFAULT_SWARM_CONFIG

const PIECE = 4 * BLOCK_SIZE
const all = (): boolean => true

function seededRandom (seed: number): () => number {
  let x = seed
  return () => { x = (x * 1103515245 + 12345) % 2147483648; return x / 2147483648 }
}

let clock = 0
function picker (pieces: number, lastPieceBytes = PIECE): PiecePicker {
  return new PiecePicker({ pieceCount: pieces, pieceLength: PIECE, totalLength: PIECE * (pieces - 1) + lastPieceBytes, random: seededRandom(7), now: () => clock, config: { endgameAfterMs: 1000 } })
}

function completePiece (p: PiecePicker, peer: string, index: number): void {
  for (let b = 0; b < 4; b++) p.received(peer, index, b * BLOCK_SIZE)
  p.verified(index)
}

test('the first pieces are spread at random, not all the same for every node', () => {
  const firsts = new Set<number>()
  for (let seed = 1; seed <= 20; seed++) {
    const p = new PiecePicker({ pieceCount: 100, pieceLength: PIECE, totalLength: 100 * PIECE, random: seededRandom(seed) })
    firsts.add(p.pick('a', all, 1)[0].index)
  }
  assert.ok(firsts.size >= 10, `20 nodes started on only ${firsts.size} distinct pieces`)
})

test('after the random start, the rarest piece the peer has is picked', () => {
  const p = picker(10)
  for (let i = 0; i < randomFirstPieces; i++) completePiece(p, 'x', i)
  for (let i = 0; i < 10; i++) { p.peerHasPiece(i); p.peerHasPiece(i) }
  p.peerLostPiece(7) // piece 7 now held by one peer only
  const blocks = p.pick('a', all, 1)
  assert.equal(blocks[0].index, 7)
})

test('in order (every peer a seed): after the random start, new pieces come lowest index first whatever their rarity', () => {
  const p = picker(10)
  p.inOrder = true
  for (const i of [5, 6, 8, 9].slice(0, randomFirstPieces)) completePiece(p, 'x', i)
  for (let i = 0; i < 10; i++) p.peerHasPiece(i)
  p.peerHasPiece(0) // piece 0 more common than the rest: rarest-first would not start there
  const picked = p.pick('a', all, 4 * 3).map(b => b.index)
  assert.deepEqual([...new Set(picked)], [0, 1, 2])
  p.inOrder = false
  p.peerLostPiece(7) // now the rarest
  assert.equal(p.pick('a', all, 4)[0].index, 7, 'back to rarest-first once a leecher is among the peers')
})

test('blocks of a started piece are finished before a new piece is started', () => {
  const p = picker(10)
  const first = p.pick('a', all, 2)
  assert.equal(first.length, 2)
  assert.equal(first[0].index, first[1].index)
  const next = p.pick('b', all, 2)
  assert.deepEqual(next.map(b => b.index), [first[0].index, first[0].index])
  assert.deepEqual(next.map(b => b.offset), [2 * BLOCK_SIZE, 3 * BLOCK_SIZE])
})

test('only pieces the peer has are requested from it', () => {
  const p = picker(10)
  const blocks = p.pick('a', i => i === 3, 100)
  assert.equal(blocks.length, 4)
  assert.ok(blocks.every(b => b.index === 3))
})

test('the last piece has a short last block', () => {
  const p = picker(2, BLOCK_SIZE + 100)
  const blocks = p.pick('a', i => i === 1, 10)
  assert.deepEqual(blocks.map(b => b.length), [BLOCK_SIZE, 100])
})

test('a block is never requested twice outside endgame, and endgame allows a bounded second request once the first is stale', () => {
  clock = 0
  const p = picker(1)
  const a = p.pick('a', all, 10)
  assert.equal(a.length, 4)
  assert.equal(p.pick('b', all, 10).length, 0, 'endgame, but the first requests are fresh')
  clock = 1500
  const b = p.pick('b', all, 10)
  assert.equal(b.length, 4, 'endgame: everything requested long ago, so b may duplicate')
  const c = p.pick('c', all, 10)
  assert.equal(DEFAULT_SWARM_CONFIG.endgameRequestsPerBlock, 2)
  assert.equal(c.length, 0, 'no block is requested from more than two peers')
  assert.equal(p.pick('a', all, 10).length, 0, 'a peer is never asked twice for one block')
})

test('endgame waits longer before duplicating a block held by a peer with a long queue', () => {
  clock = 0
  const waits: Record<string, number> = { slow: 8000, quick: 1000 }
  const p = new PiecePicker({
    pieceCount: 2, pieceLength: PIECE, totalLength: 2 * PIECE, random: seededRandom(3), now: () => clock,
    endgameWait: requesters => Math.max(...[...requesters].map(id => waits[id] ?? 1000))
  })
  const fromSlow = p.pick('slow', i => i === 0, 10)
  const fromQuick = p.pick('quick', i => i === 1, 10)
  assert.equal(fromSlow.length + fromQuick.length, 8)
  clock = 2000
  const dup = p.pick('other', all, 10)
  assert.ok(dup.length > 0 && dup.every(r => r.index === 1), `only blocks held by the quick peer are stale after 2 s: got ${JSON.stringify(dup)}`)
  clock = 9000
  assert.ok(p.pick('third', all, 10).some(r => r.index === 0), 'the blocks held by the slow peer are stale at last')
})

test('an arrived block is cancelled at the other peers asked for it in endgame', () => {
  clock = 0
  const p = picker(1)
  p.pick('a', all, 10)
  clock = 5000
  p.pick('b', all, 10)
  const r = p.received('b', 0, 0)
  assert.ok(r)
  assert.deepEqual(r.cancelFrom, ['a'])
  assert.equal(r.duplicate, false)
  assert.equal(p.received('a', 0, 0)?.duplicate, true)
})

test('the piece is complete when its last block arrives, and the sender of each block is known', () => {
  clock = 0
  const p = picker(1)
  p.pick('a', all, 2)
  p.pick('b', all, 2)
  assert.equal(p.received('a', 0, 0)?.pieceComplete, false)
  p.received('a', 0, BLOCK_SIZE)
  p.received('b', 0, 2 * BLOCK_SIZE)
  assert.equal(p.received('b', 0, 3 * BLOCK_SIZE)?.pieceComplete, true)
  assert.deepEqual(p.senders(0), ['a', 'a', 'b', 'b'])
})

test('a piece that fails its hash check is fetched again from scratch, from a single peer', () => {
  clock = 0
  const p = picker(1)
  p.pick('a', all, 2)
  p.pick('b', all, 2)
  for (let b = 0; b < 4; b++) p.received(b < 2 ? 'a' : 'b', 0, b * BLOCK_SIZE)
  p.failed(0)
  assert.equal(p.hasPiece(0), false)
  assert.equal(p.pick('c', all, 2).length, 2, 'c takes the suspect piece')
  clock = 10_000
  assert.equal(p.pick('d', all, 10).length, 0, 'no other peer may add blocks to it, not even in endgame')
  assert.equal(p.pick('c', all, 10).length, 2, 'its owner fetches the rest')
})

test('when the owner of a suspect piece leaves, the piece restarts for someone else', () => {
  const p = picker(1)
  p.pick('a', all, 4)
  p.received('a', 0, 0)
  p.failed(0)
  p.pick('c', all, 1)
  p.received('c', 0, 0)
  assert.deepEqual(p.peerGone('c'), [0])
  assert.deepEqual(p.pick('d', all, 10).map(b => b.offset), [0, BLOCK_SIZE, 2 * BLOCK_SIZE, 3 * BLOCK_SIZE])
})

test('blocks of a departed or choking peer go back to the pool', () => {
  const p = picker(1)
  p.pick('a', all, 4)
  p.peerGone('a')
  assert.equal(p.pick('b', all, 10).length, 4)
  p.abandoned('b', 0, 0)
  const again = p.pick('c', all, 1)
  assert.deepEqual(again.map(b => b.offset), [0])
})

test('unexpected blocks are reported as such', () => {
  const p = picker(2)
  assert.equal(p.received('a', 0, 0), undefined)
  p.pick('a', i => i === 0, 4)
  assert.equal(p.received('a', 0, 5), undefined, 'offset not on a block boundary')
  assert.equal(p.received('a', 0, 100 * BLOCK_SIZE), undefined)
})

test('verified bytes count the short last piece exactly', () => {
  const p = picker(3, 1000)
  p.verified(2)
  assert.equal(p.verifiedBytes, 1000)
  p.verified(0)
  assert.equal(p.verifiedBytes, PIECE + 1000)
  p.verified(1)
  assert.equal(p.isComplete, true)
  assert.equal(p.verifiedBytes, 2 * PIECE + 1000)
})

test('a peer with nothing new to offer does not start endgame while other blocks are still unrequested', () => {
  clock = 0
  const p = picker(2)
  p.peerHasPiece(0)
  p.peerHasPiece(1)
  p.pick('a', i => i === 0, 10)
  clock = 10_000
  assert.equal(p.pick('b', i => i === 0, 10).length, 0, 'piece 1 is still unrequested: no duplicate of piece 0')
  p.pick('c', i => i === 1, 10)
  assert.equal(p.pick('b', i => i === 0, 10).length, 4, 'now everything is requested: endgame')
})

test('an announced piece is picked alone, with the same rules as a full pick: held pieces and fully requested ones give nothing', () => {
  const p = picker(6)
  completePiece(p, 'x', 0)
  assert.deepEqual(p.pickAnnounced('a', 0, 10), [], 'a piece we hold')
  const fresh = p.pickAnnounced('a', 3, 2)
  assert.deepEqual(fresh.map(b => [b.index, b.offset]), [[3, 0], [3, BLOCK_SIZE]], 'a new piece is started')
  assert.deepEqual(p.pickAnnounced('b', 3, 10).map(b => b.offset), [2 * BLOCK_SIZE, 3 * BLOCK_SIZE], 'a partial piece gives its unrequested blocks')
  assert.deepEqual(p.pickAnnounced('c', 3, 10), [], 'every block of it is requested')
  assert.deepEqual(p.pickAnnounced('c', 99, 10), [], 'no such piece')
})

test('the return count moves whenever requested blocks go back to the pool, and only then', () => {
  const p = picker(3)
  const start = p.returnCount
  const blocks = p.pick('a', all, 3)
  p.received('a', blocks[0].index, blocks[0].offset)
  assert.equal(p.returnCount, start, 'requests and arrivals return nothing')
  p.abandoned('a', blocks[1].index, blocks[1].offset)
  assert.equal(p.returnCount, start + 1, 'an abandoned request')
  p.abandoned('a', blocks[1].index, blocks[1].offset)
  assert.equal(p.returnCount, start + 1, 'abandoning a block not requested of the peer returns nothing')
  p.peerGone('a')
  assert.equal(p.returnCount, start + 2, 'a peer gone')
  p.failed(blocks[0].index)
  assert.equal(p.returnCount, start + 3, 'a failed piece')
})

test('a full pick that finds nothing says whether it looked for endgame duplicates', () => {
  const p = picker(2)
  p.peerHasPiece(0)
  p.peerHasPiece(1)
  assert.equal(p.pick('a', i => i === 0, 10).length, 4)
  assert.equal(p.pick('b', i => i === 0, 10).length, 0)
  assert.equal(p.endgame, false, 'piece 1 is still unrequested: no endgame')
  assert.equal(p.pick('c', all, 10).length, 4)
  assert.equal(p.pick('b', i => i === 0, 10).length, 0, 'endgame, but the requests are fresh')
  assert.equal(p.endgame, true)
})
