import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SuperSeed, REVEALED_PER_PEER, STALE_OFFER_MS } from '../src/swarm/super-seed.ts'

const none = (): boolean => false
const noCopies = (): number => 0

test('each peer is shown a few pieces, and no piece is shown to two peers while it is in flight', () => {
  const seed = new SuperSeed(40, { now: () => 0 })
  const shown = new Set<number>()
  for (let peer = 0; peer < 10; peer++) {
    const pieces = seed.reveal(`p${peer}`, none, noCopies)
    assert.equal(pieces.length, REVEALED_PER_PEER)
    for (const p of pieces) {
      assert.ok(!shown.has(p), `piece ${p} shown twice`)
      shown.add(p)
    }
  }
  assert.deepEqual(seed.reveal('p0', none, noCopies), [], 'nothing more until p0 announces one')
})

test('announcing a revealed piece frees a slot for the next one', () => {
  const seed = new SuperSeed(10, { now: () => 0 })
  const [first] = seed.reveal('a', none, noCopies)
  const next = seed.reveal('a', i => i === first, noCopies)
  assert.equal(next.length, 1)
  assert.notEqual(next[0], first)
})

test('a piece another peer holds is never revealed; one in flight elsewhere only once the offer is stale', () => {
  let clock = 0
  const seed = new SuperSeed(3, { now: () => clock })
  assert.deepEqual(seed.reveal('x', none, i => (i === 2 ? 0 : 1)), [2])
  assert.deepEqual(seed.reveal('y', none, i => (i === 2 ? 0 : 1)), [], 'piece 2 is in flight to x')
  clock = STALE_OFFER_MS + 1
  assert.deepEqual(seed.reveal('y', none, i => (i === 2 ? 0 : 1)), [2], 'x was too slow')
})

test('a departed peer gives its revealed pieces back', () => {
  const seed = new SuperSeed(2, { now: () => 0 })
  assert.equal(seed.reveal('a', none, noCopies).length, 2)
  assert.deepEqual(seed.reveal('b', none, noCopies), [])
  seed.peerGone('a')
  assert.equal(seed.reveal('b', none, noCopies).length, 2)
})

test('an offer that keeps being requested does not go stale, however long the transfer takes', () => {
  let clock = 0
  const seed = new SuperSeed(1, { now: () => clock })
  assert.deepEqual(seed.reveal('x', none, noCopies), [0])
  clock = STALE_OFFER_MS - 1
  seed.touch(0)
  clock = STALE_OFFER_MS + 10
  assert.deepEqual(seed.reveal('y', none, noCopies), [], 'x is still fetching piece 0')
})
