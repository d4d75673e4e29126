// The swarm's and the tracker's config: overrides over frozen defaults, undefined keeps a default.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULT_SWARM_CONFIG, swarmConfig } from '../src/swarm/config.ts'
import { withDefaults } from '../src/config/defaults.ts'
import { DEFAULT_TRACKER_CONFIG, trackerConfig } from '../src/tracker/config.ts'

test('overrides replace defaults field by field; an undefined override keeps the default', () => {
  const config = swarmConfig({ maxConnections: 40, uploadSlots: undefined })
  assert.equal(config.maxConnections, 40)
  assert.equal(config.uploadSlots, DEFAULT_SWARM_CONFIG.uploadSlots)
  assert.equal(config.readHoldMs, DEFAULT_SWARM_CONFIG.readHoldMs)
  assert.equal(trackerConfig({ intervalSeconds: undefined }).intervalSeconds, DEFAULT_TRACKER_CONFIG.intervalSeconds)
  assert.deepEqual(withDefaults({ a: 1, b: 2 }, undefined), { a: 1, b: 2 })
})

test('defaults and resolved configs are frozen', () => {
  assert.ok(Object.isFrozen(DEFAULT_SWARM_CONFIG))
  assert.ok(Object.isFrozen(DEFAULT_TRACKER_CONFIG))
  const config = swarmConfig({ minPipeline: 8 })
  assert.ok(Object.isFrozen(config))
  assert.throws(() => { (config as { minPipeline: number }).minPipeline = 1 }, TypeError)
  assert.equal(DEFAULT_SWARM_CONFIG.minPipeline, 4, 'an override never reaches the defaults')
})
