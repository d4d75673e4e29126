import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SmartBan } from '../src/swarm/smart-ban.ts'
import { BLOCK_SIZE } from '../src/swarm/piece-picker.ts'

test('of the peers that shared a failed piece, only those whose blocks differ from the good piece are guilty', () => {
  const good = Buffer.alloc(3 * BLOCK_SIZE, 7)
  const bad = Buffer.from(good)
  bad[BLOCK_SIZE + 5] ^= 1 // the liar sent block 1
  const ban = new SmartBan()
  ban.recordFailure(4, bad, ['honest', 'liar', 'honest'])
  assert.deepEqual(ban.guilty(4, good), ['liar'])
  assert.deepEqual(ban.guilty(4, good), [], 'a piece is judged once')
})

test('a piece that never failed convicts nobody', () => {
  assert.deepEqual(new SmartBan().guilty(1, Buffer.alloc(10)), [])
})
