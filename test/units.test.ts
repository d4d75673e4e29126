// Small pure pieces: byte ranges, command-line values, the leave-the-swarm policies, rates.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseRange } from '../src/server/range.ts'
import { parseArgs } from '../src/config/command-line.ts'
import { option, readOptions, type OptionSpec } from '../src/config/options.ts'
import { hostPort, rate } from '../src/config/values.ts'
import { DOWNLOAD_OPTIONS } from '../src/deploy/config.ts'
import { waitToLeave } from '../src/deploy/seed-policy.ts'
import { chooseStaging, RAM_HEADROOM_BYTES } from '../src/deploy/staging.ts'
import { TokenBucket } from '../src/swarm/token-bucket.ts'
import { RateMeter, RATE_WINDOW_SECONDS, MIN_RATE_SPAN_SECONDS } from '../src/swarm/rate-meter.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

test('byte ranges: single, open, suffix, past the end, and the forms served whole', () => {
  assert.deepEqual(parseRange('bytes=0-99', 1000), { kind: 'range', start: 0, end: 99 })
  assert.deepEqual(parseRange('bytes=900-', 1000), { kind: 'range', start: 900, end: 999 })
  assert.deepEqual(parseRange('bytes=-10', 1000), { kind: 'range', start: 990, end: 999 })
  assert.deepEqual(parseRange('bytes=990-5000', 1000), { kind: 'range', start: 990, end: 999 })
  assert.deepEqual(parseRange('bytes=1000-', 1000), { kind: 'unsatisfiable' })
  assert.deepEqual(parseRange('bytes=5-1', 1000), { kind: 'unsatisfiable' })
  assert.deepEqual(parseRange('bytes=0-1,5-6', 1000), { kind: 'whole' })
  assert.deepEqual(parseRange(undefined, 1000), { kind: 'whole' })
})

/** One option read from the command line, as a command reads it: errors name the flag. */
function fromFlag<T> (spec: OptionSpec<T>, text: string): T | undefined {
  return readOptions({ value: spec }, { flags: { [spec.flag]: text } }).values.value as T | undefined
}
const listen = option({ flag: 'listen', arg: 'HOST:PORT', help: '', parse: hostPort })
const rateOf = option({ flag: 'x', arg: 'RATE', help: '', parse: rate })
const parseHostPort = (text: string): unknown => fromFlag(listen, text)
const parseRate = (text: string): unknown => fromFlag(rateOf, text)
const parseSeedWait = (text: string): unknown => fromFlag(DOWNLOAD_OPTIONS.seedWait, text)

test('HOST:PORT values', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:8470'), { host: '127.0.0.1', port: 8470 })
  assert.deepEqual(parseHostPort(':8470'), { host: '0.0.0.0', port: 8470 })
  assert.deepEqual(parseHostPort('8470'), { host: '0.0.0.0', port: 8470 })
  assert.deepEqual(parseHostPort('[::1]:80'), { host: '::1', port: 80 })
  assert.throws(() => parseHostPort('host:99999'), /--listen "host:99999"/)
  assert.throws(() => parseHostPort('host'), /expected HOST:PORT/)
})

test('rates in bits or bytes per second', () => {
  assert.equal(parseRate('40mbit'), 5e6)
  assert.equal(parseRate('1gbit'), 1.25e8)
  assert.equal(parseRate('5MB'), 5e6)
  assert.equal(parseRate('512KiB'), 524288)
  assert.throws(() => parseRate('fast'), /--x "fast"/)
  assert.throws(() => parseRate('10'), /expected a rate/)
})

test('flags: unknown ones, repeated ones and empty values are refused', () => {
  assert.throws(() => parseArgs(['--nope'], { strings: ['a'] }), /unknown option --nope/)
  assert.throws(() => parseArgs(['--a', '1', '--a', '2'], { strings: ['a'] }), /--a given more than once/)
  assert.throws(() => parseArgs(['--a='], { strings: ['a'] }), /--a needs a value/)
  assert.deepEqual(parseArgs(['--p', 'x', '--p', 'y'], { repeatable: ['p'] }).flags.p, ['x', 'y'])
  assert.equal(parseArgs(['--no-report'], { onByDefault: ['report'] }).flags.report, false)
  assert.equal(parseArgs([], { onByDefault: ['report'] }).flags.report, true)
})

test('seed-wait policies, with SystemImager spellings', () => {
  assert.deepEqual(parseSeedWait('none'), { kind: 'none' })
  assert.deepEqual(parseSeedWait('n'), { kind: 'none' })
  assert.deepEqual(parseSeedWait('y'), { kind: 'upload-min', kibPerSecond: 50 })
  assert.deepEqual(parseSeedWait('upload-min=500'), { kind: 'upload-min', kibPerSecond: 500 })
  assert.deepEqual(parseSeedWait('swarm'), { kind: 'swarm' })
  assert.throws(() => parseSeedWait('upload-min=fast'), /--seed-wait "upload-min=fast"/)
})

test('a setting parses the same from a flag, the environment and the kernel command line, in any case', () => {
  const sources = [
    { flags: { 'seed-wait': 'SWARM' } },
    { env: { SI_SEED_WAIT: 'Swarm' } },
    { cmdline: new Map([['si.seed_wait', 'swarm']]) },
    { cmdline: new Map([['BITTORRENT_SEED_WAIT', 'sWaRm']]) }
  ]
  for (const source of sources) assert.deepEqual(readOptions(DOWNLOAD_OPTIONS, source).values.seedWait, { kind: 'swarm' }, JSON.stringify([...Object.entries(source)]))
  assert.equal(readOptions(DOWNLOAD_OPTIONS, { env: { SI_UPLOAD_LIMIT: '40MBIT' } }).values.uploadLimit, 5e6)
  assert.throws(() => readOptions(DOWNLOAD_OPTIONS, { env: { SI_MAX_PEERS: '0' } }), /environment SI_MAX_PEERS="0": expected an integer from 1 to 10000/)
  assert.throws(() => readOptions(DOWNLOAD_OPTIONS, { flags: { 'max-peers': '0' } }), /--max-peers "0": expected an integer from 1 to 10000/)
})

test('upload-min leaves once the upload rate falls under the threshold', async () => {
  let rate = 1_000_000
  setTimeout(() => { rate = 10 * 1024 }, 150)
  const reason = await waitToLeave({ kind: 'upload-min', kibPerSecond: 50 }, { uploadRate: () => rate, leechers: async () => undefined }, { pollSeconds: 0.1, maxSeconds: 5 })
  assert.match(reason, /10\.0 KiB\/s fell under 50 KiB\/s/)
})

test('swarm-aware leaves after the tracker twice reports no leecher, and never waits past the bound', async () => {
  const answers = [3, 1, 0, 2, 0, 0]
  const reason = await waitToLeave({ kind: 'swarm' }, { uploadRate: () => 0, leechers: async () => answers.shift() }, { pollSeconds: 0.01, maxSeconds: 5 })
  assert.equal(reason, 'tracker reports no leecher left')
  assert.equal(answers.length, 0)
  const bounded = await waitToLeave({ kind: 'swarm' }, { uploadRate: () => 1000, leechers: async () => 5 }, { pollSeconds: 0.05, maxSeconds: 0.2 })
  assert.match(bounded, /maximum of 0.2 s/)
})

test('swarm-aware leaves when nobody fetches from it for the idle bound, whatever leechers the tracker counts', async () => {
  // Leechers that never fetch (a host announcing peer ids it never uses) must not hold the node until --seed-max.
  let rate = 5000
  setTimeout(() => { rate = 0 }, 100)
  const started = Date.now()
  const reason = await waitToLeave({ kind: 'swarm' }, { uploadRate: () => rate, leechers: async () => 4 }, { pollSeconds: 0.02, maxSeconds: 5, idleSeconds: 0.3 })
  assert.match(reason, /no peer fetched from this node for 0.3 s though the tracker counts 4 leecher/)
  assert.ok(Date.now() - started >= 350, 'the idle time counts from the last upload, not from the start')
})

test('staging follows SystemImager: RAM when it holds the image plus headroom, else the target disk, and an explicit choice wins', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'si-staging-'))
  try {
    const ram = await chooseStaging({ size: 1000, target: dir, freeMemory: 1000 + RAM_HEADROOM_BYTES + 1 })
    assert.equal(ram.kind, 'ram')
    const disk = await chooseStaging({ size: 1000, target: dir, freeMemory: RAM_HEADROOM_BYTES })
    assert.equal(disk.kind, 'disk')
    assert.equal(disk.dir, join(dir, '.si-staging'))
    const explicit = await chooseStaging({ size: 1000, target: dir, explicit: join(dir, 'mine'), freeMemory: 1e12 })
    assert.deepEqual([explicit.kind, explicit.dir], ['explicit', join(dir, 'mine')])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('the token bucket lets a burst through, then paces to its rate', () => {
  const bucket = new TokenBucket(1_000_000, 100_000)
  assert.equal(bucket.tryTake(100_000), true)
  assert.equal(bucket.tryTake(50_000), false)
  const wait = bucket.msUntil(50_000)
  assert.ok(wait >= 45 && wait <= 51, `waits ${wait} ms for 50 kB at 1 MB/s`)
})

test('a rate meter reads a steady flow right from its first second, and over its window later', () => {
  let clock = 10_000
  const meter = new RateMeter(() => clock)
  const perSecond = 1_000_000
  const step = 100
  const run = (ms: number): void => {
    for (let t = 0; t < ms; t += step) { clock += step; meter.add(perSecond * step / 1000) }
  }
  run(1_000)
  assert.ok(Math.abs(meter.rate() - perSecond) / perSecond < 0.15, `after 1 s: ${meter.rate()}`)
  run(9_000)
  assert.ok(Math.abs(meter.rate() - perSecond) / perSecond < 0.15, `after 10 s: ${meter.rate()}`)
  clock += RATE_WINDOW_SECONDS * 1000
  assert.equal(meter.rate(), 0, 'an idle window reads zero')
  const young = new RateMeter(() => clock)
  young.add(16_384)
  assert.equal(young.rate(), 16_384 / MIN_RATE_SPAN_SECONDS, 'one early block is not read as a burst')
})

test('a meter idle for long reads a new flow\'s full rate from its busiest second, not diluted by the idle window', () => {
  let clock = 10_000
  const meter = new RateMeter(() => clock)
  clock += 60_000 - 100 // the flow starts on a second's boundary: 10 blocks in that second
  for (let t = 0; t < 1_500; t += 100) { clock += 100; meter.add(100_000) }
  assert.ok(meter.rate() < 400_000, `the windowed rate still averages the idle seconds: ${meter.rate()}`)
  assert.equal(meter.busiestSecond(), 1_000_000)
  clock += RATE_WINDOW_SECONDS * 1000
  assert.equal(meter.busiestSecond(), 0, 'forgotten once out of the window')
})
