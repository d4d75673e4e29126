import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SuperSeed, type Offer, type SeedCandidate } from '../src/swarm/super-seed.ts'
import { DEFAULT_SWARM_CONFIG } from '../src/swarm/config.ts'

const {
  superSeedOffersPerPeer: REVEALED_PER_PEER,
  superSeedStaleOfferMs: STALE_OFFER_MS,
  superSeedStarvedAfterMs: STARVED_AFTER_MS,
  superSeedMaxShareLead: MAX_SHARE_LEAD
} = DEFAULT_SWARM_CONFIG

const none = (): boolean => false
const noCopies = (): number => 0
const UNLIMITED = 1_000

function peers (count: number, has: (index: number) => boolean = none): SeedCandidate[] {
  return Array.from({ length: count }, (_, i) => ({ id: `p${i}`, has }))
}

function piecesOf (offers: Offer[], peer: string): number[] {
  return offers.filter(o => o.peer === peer).map(o => o.index)
}

test('each peer is shown a few pieces, and no piece is shown to two peers while it is in flight', () => {
  const seed = new SuperSeed(40, { now: () => 0 })
  const offers = seed.allocate(peers(10), noCopies, 10 * REVEALED_PER_PEER)
  const shown = new Set<number>()
  for (let p = 0; p < 10; p++) {
    const pieces = piecesOf(offers, `p${p}`)
    assert.equal(pieces.length, REVEALED_PER_PEER)
    for (const piece of pieces) {
      assert.ok(!shown.has(piece), `piece ${piece} shown twice`)
      shown.add(piece)
    }
  }
  assert.deepEqual(seed.allocate(peers(10), noCopies, 10 * REVEALED_PER_PEER), [], 'nothing more until a peer announces one')
})

test('only `capacity` offers are alive at once, and the slots go round the peers one each', () => {
  const seed = new SuperSeed(100, { now: () => 0 })
  const first = seed.allocate(peers(8), noCopies, 3)
  assert.equal(first.length, 3)
  assert.equal(new Set(first.map(o => o.peer)).size, 3, 'three different peers get the three slots')
  assert.deepEqual(seed.allocate(peers(8), noCopies, 3), [], 'no slot is free')
  // One of them announces its piece: the freed slot goes to a peer that has had none.
  const done = first[0]
  const candidates = peers(8).map(c => (c.id === done.peer ? { id: c.id, has: (i: number) => i === done.index } : c))
  const next = seed.allocate(candidates, noCopies, 3)
  assert.equal(next.length, 1)
  assert.ok(!first.some(o => o.peer === next[0].peer), `${next[0].peer} already had a piece`)
})

test('a lone peer may take all the slots: capacity is shared among those who ask', () => {
  const seed = new SuperSeed(100, { now: () => 0 })
  assert.equal(seed.allocate(peers(1), noCopies, 8).length, 8)
})

test('stale offers free their slot: a peer that stopped asking does not hold the seed back', () => {
  let clock = 0
  const seed = new SuperSeed(100, { now: () => clock })
  assert.equal(seed.allocate(peers(4), noCopies, 2).length, 2)
  assert.equal(seed.allocate(peers(4), noCopies, 2).length, 0)
  clock = STALE_OFFER_MS + 1
  assert.equal(seed.allocate(peers(4), noCopies, 2).length, 2)
})

test('announcing a revealed piece frees a slot for the next one', () => {
  const seed = new SuperSeed(10, { now: () => 0 })
  const [first] = seed.allocate([{ id: 'a', has: none }], noCopies, 1)
  const next = seed.allocate([{ id: 'a', has: i => i === first.index }], noCopies, 1)
  assert.equal(next.length, 1)
  assert.notEqual(next[0].index, first.index)
})

test('a piece another peer holds is never revealed; one in flight elsewhere only once the offer is stale', () => {
  let clock = 0
  const seed = new SuperSeed(3, { now: () => clock })
  const copies = (i: number): number => (i === 2 ? 0 : 1)
  assert.deepEqual(seed.allocate([{ id: 'x', has: none }], copies, UNLIMITED).map(o => o.index), [2])
  assert.deepEqual(seed.allocate([{ id: 'y', has: none }], copies, UNLIMITED), [], 'piece 2 is in flight to x')
  clock = STALE_OFFER_MS + 1
  assert.deepEqual(seed.allocate([{ id: 'y', has: none }], copies, UNLIMITED).map(o => o.index), [2], 'x was too slow')
})

test('a departed peer gives its revealed pieces back', () => {
  const seed = new SuperSeed(2, { now: () => 0 })
  assert.equal(seed.allocate([{ id: 'a', has: none }], noCopies, UNLIMITED).length, 2)
  assert.deepEqual(seed.allocate([{ id: 'b', has: none }], noCopies, UNLIMITED), [])
  seed.peerGone('a')
  assert.equal(seed.allocate([{ id: 'b', has: none }], noCopies, UNLIMITED).length, 2)
})

test('an offer that keeps being requested does not go stale, however long the transfer takes', () => {
  let clock = 0
  const seed = new SuperSeed(1, { now: () => clock })
  assert.deepEqual(seed.allocate([{ id: 'x', has: none }], noCopies, UNLIMITED).map(o => o.index), [0])
  clock = STALE_OFFER_MS - 1
  seed.touch(0)
  clock = STALE_OFFER_MS + 10
  assert.deepEqual(seed.allocate([{ id: 'y', has: none }], noCopies, UNLIMITED), [], 'x is still fetching piece 0')
})

test('a lone peer that never announces what it got still gets new offers once the old ones go stale', () => {
  // aria2c does not send `have` to the peer a piece came from.
  let clock = 0
  const seed = new SuperSeed(100, { now: () => clock })
  const shown = new Set<number>()
  for (let round = 0; round < 5; round++) {
    const offers = seed.allocate(peers(1), noCopies, 4)
    assert.equal(offers.length, 4, `round ${round}: four new offers`)
    for (const o of offers) {
      assert.ok(!shown.has(o.index), `piece ${o.index} shown again to the same peer`)
      shown.add(o.index)
    }
    clock += STALE_OFFER_MS + 1
  }
})

test('a peer shown nothing for a while is shown pieces others hold, the rarest first, and keeps being served', () => {
  let clock = 0
  const seed = new SuperSeed(4, { now: () => clock })
  const copies = (i: number): number => [3, 1, 2, 5][i]
  const lone = [{ id: 'cut-off', has: none }]
  assert.deepEqual(seed.allocate(lone, copies, 1), [], 'every piece is held elsewhere: nothing yet')
  clock = STARVED_AFTER_MS - 1
  assert.deepEqual(seed.allocate(lone, copies, 1), [])
  clock = STARVED_AFTER_MS
  assert.deepEqual(seed.allocate(lone, copies, 1).map(o => o.index), [1], 'the piece with the fewest copies')
  seed.release('cut-off', 1)
  clock += 1
  assert.deepEqual(seed.allocate([{ id: 'cut-off', has: i => i === 1 }], copies, 1).map(o => o.index), [2], 'the next one at once, not 20 s later')
})

/** A peer that announces at once every piece shown to it, counting what it was shown. */
function quickAnnouncer (id: string): { candidate: SeedCandidate; shown: () => number; record: (offers: Offer[]) => void } {
  const held = new Set<number>()
  return {
    candidate: { id, has: i => held.has(i) },
    shown: () => held.size,
    record: offers => { for (const o of offers) if (o.peer === id) held.add(o.index) }
  }
}

test('a peer that gets its pieces faster than another still fetching leads it by at most MAX_SHARE_LEAD pieces', () => {
  const CAPACITY = 2 * REVEALED_PER_PEER
  const seed = new SuperSeed(100, { now: () => 0 })
  const slow = { id: 'slow', has: none }
  const fast = quickAnnouncer('fast')
  const first = seed.allocate([slow, fast.candidate], noCopies, CAPACITY)
  fast.record(first)
  assert.equal(piecesOf(first, 'slow').length, piecesOf(first, 'fast').length, 'both start alike')
  const slowShown = piecesOf(first, 'slow').length
  // The fast peer announces every piece at once; the slow one keeps fetching its offers.
  for (let round = 0; round < 20; round++) {
    for (const index of piecesOf(first, 'slow')) seed.touch(index)
    fast.record(seed.allocate([slow, fast.candidate], noCopies, CAPACITY))
  }
  assert.equal(fast.shown(), slowShown + MAX_SHARE_LEAD, 'the fast peer waits for the slow one')
})

test('a peer that stopped asking sets nobody a pace', () => {
  const CAPACITY = 2 * REVEALED_PER_PEER
  let clock = 0
  const seed = new SuperSeed(200, { now: () => clock })
  const silent = { id: 'silent', has: none }
  const fast = quickAnnouncer('fast')
  for (let round = 0; round < 10; round++) fast.record(seed.allocate([silent, fast.candidate], noCopies, CAPACITY))
  const capped = fast.shown()
  assert.equal(capped, REVEALED_PER_PEER + MAX_SHARE_LEAD, 'held to the silent peer while its offers are alive')
  clock = STALE_OFFER_MS + 1 // the silent peer never asked for its offers
  fast.record(seed.allocate([silent, fast.candidate], noCopies, CAPACITY))
  assert.ok(fast.shown() > capped, 'served again once the silent peer\'s offers went stale')
})

test('the offers per peer and the stale time come from the config', () => {
  let clock = 0
  const seed = new SuperSeed(40, { now: () => clock, config: { superSeedOffersPerPeer: 3, superSeedStaleOfferMs: 100 } })
  const offers = seed.allocate(peers(2), noCopies, 6)
  assert.deepEqual([piecesOf(offers, 'p0').length, piecesOf(offers, 'p1').length], [3, 3])
  assert.deepEqual(seed.allocate(peers(2), noCopies, 6), [], 'every slot is taken')
  clock = 101
  assert.equal(seed.allocate(peers(2), noCopies, 6).length, 6, 'the offers went stale after 100 ms')
})
