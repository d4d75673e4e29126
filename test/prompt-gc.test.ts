// A thread streaming buffers through holds at most its live ones plus about twice the
// collector's slack (buffers are freed just after a collection, so the next floor may
// be measured before they all are): the dead ones are collected as soon as the slack is
// used up, not when V8's own external-memory trigger would fire (without the collector,
// this stream held 118 MiB).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { PromptCollector, heldBytes } from '../src/deploy/prompt-gc.ts'

const MIB = 1024 * 1024
const SLACK = 8 * MIB
/** Buffers alive at once, as a pipeline holds a few chunks in flight. */
const LIVE = 4
const STREAMED = 400

/** Streams 1 MiB buffers, each alive while the next LIVE are made; returns the most held at once. */
async function stream (collector: PromptCollector | undefined): Promise<number> {
  const live: Buffer[] = []
  let most = 0
  for (let i = 0; i < STREAMED; i++) {
    live.push(Buffer.alloc(MIB, i))
    if (live.length > LIVE) live.shift()
    // Across turns of the event loop, as sockets and file reads deliver them.
    if (i % 8 === 0) await yieldToLoop()
    collector?.check()
    most = Math.max(most, heldBytes())
  }
  return most
}

test('streaming 400 MiB of buffers with a prompt collector holds at most the live ones plus twice the slack', async () => {
  const collector = new PromptCollector(SLACK)
  assert.ok(collector.available, 'gc() is available at run time')
  const base = heldBytes()
  const most = await stream(collector)
  assert.ok(collector.collections > 0, 'it collected')
  const bound = base + (LIVE + 1) * MIB + 2 * SLACK + 8 * MIB
  assert.ok(most <= bound, `held ${(most / MIB).toFixed(1)} MiB at most; bound ${(bound / MIB).toFixed(1)} MiB`)
})
