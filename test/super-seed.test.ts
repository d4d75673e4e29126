import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SuperSeed, REVEALED_PER_PEER } from '../src/swarm/super-seed.ts'

test('each peer is shown a few pieces, and different peers are shown different pieces while any are left', () => {
  const seed = new SuperSeed(40)
  const shown = new Set<number>()
  for (let peer = 0; peer < 10; peer++) {
    const pieces = seed.reveal(() => false, new Set())
    assert.equal(pieces.length, REVEALED_PER_PEER)
    for (const p of pieces) {
      assert.ok(!shown.has(p), `piece ${p} shown twice while unshown pieces remained`)
      shown.add(p)
    }
  }
})

test('pieces a peer holds or was already shown are not revealed to it again', () => {
  const seed = new SuperSeed(6)
  const pending = new Set([0, 1])
  const pieces = seed.reveal(i => i === 2 || i === 3, pending)
  assert.deepEqual(pieces.sort(), [4, 5])
  assert.deepEqual(seed.reveal(() => true, new Set()), [], 'a peer with everything is shown nothing')
})
