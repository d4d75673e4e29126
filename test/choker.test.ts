import { test } from 'node:test'
import assert from 'node:assert/strict'
import { selectUnchoked, type ChokeCandidate } from '../src/swarm/choker.ts'

function cand (id: string, over: Partial<ChokeCandidate> = {}): ChokeCandidate {
  return { id, interested: true, unchoked: false, unchokedSince: 0, waitingSince: 0, ...over }
}

test('every interested peer is unchoked while the slots allow', () => {
  const chosen = selectUnchoked([cand('a'), cand('b'), cand('c', { interested: false })], 4, 1000)
  assert.deepEqual([...chosen].sort(), ['a', 'b'])
})

test('peers that are not interested are never unchoked', () => {
  assert.equal(selectUnchoked([cand('a', { interested: false })], 4, 1000).size, 0)
})

test('with more interested peers than slots, the slots rotate to those waiting longest', () => {
  const now = 100_000
  const peers = [
    cand('old', { unchoked: true, unchokedSince: now - 60_000 }),
    cand('fresh', { unchoked: true, unchokedSince: now - 1_000 }),
    cand('waiting-long', { waitingSince: now - 50_000 }),
    cand('waiting-short', { waitingSince: now - 5_000 })
  ]
  const chosen = selectUnchoked(peers, 2, now, 10_000)
  assert.deepEqual([...chosen].sort(), ['fresh', 'waiting-long'])
})

test('the number unchoked never exceeds the slots', () => {
  const peers = Array.from({ length: 50 }, (_, i) => cand(`p${i}`, { unchoked: i % 2 === 0, unchokedSince: i * 10, waitingSince: i }))
  assert.equal(selectUnchoked(peers, 7, 1_000_000).size, 7)
})
