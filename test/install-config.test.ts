// Kernel command line, SystemImager aliases, environment and flags: precedence and
// the messages a mistyped PXE line gets.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isSiError } from '../src/errors.ts'
import { parseCmdline, splitCmdline } from '../src/install/cmdline.ts'
import { resolveConfig, reportTarget } from '../src/install/config.ts'
import { normalizeServer } from '../src/config/values.ts'
import { DOWNLOAD_OPTIONS } from '../src/deploy/config.ts'
import { defaultNodeName } from '../src/formats/node-name.ts'

test('splits a kernel command line like the kernel: quotes group, the last key wins', () => {
  assert.deepEqual(splitCmdline('a=1  b="x y" c\n'), ['a=1', 'b=x y', 'c'])
  const m = parseCmdline('si.image=a si.image=b quiet si.node="n 1"')
  assert.equal(m.get('si.image'), 'b')
  assert.equal(m.get('si.node'), 'n 1')
  assert.equal(m.has('quiet'), false)
})

test('SystemImager names map onto si.* keys', () => {
  const { config } = resolveConfig({
    cmdline: 'BOOT_IMAGE=x IMAGESERVER=10.0.0.5 IMAGENAME=compute@3 BITTORRENT_STAGING=/tmp/st BITTORRENT_SEED_WAIT=y BITTORRENT_UPLOAD_MIN=500 BITTORRENT_POLLING_TIME=5 MONITOR_SERVER=10.0.0.9 MONITOR_PORT=8181'
  })
  assert.equal(config.server, 'http://10.0.0.5:8470')
  assert.equal(config.image, 'compute@3')
  assert.equal(config.staging, '/tmp/st')
  assert.deepEqual(config.seedWait, { kind: 'upload-min', kibPerSecond: 500 })
  assert.equal(config.pollSeconds, 5)
  assert.equal(config.monitor, 'http://10.0.0.9:8181')
  assert.equal(config.origins.server, 'kernel command line IMAGESERVER')
})

test('si.* wins over the alias, the environment over the command line, flags over both', () => {
  const cmdline = 'IMAGESERVER=10.0.0.5 si.server=http://a:1 si.image=one si.finish=reboot'
  assert.equal(resolveConfig({ cmdline }).config.server, 'http://a:1')
  const env = { SI_IMAGE: 'two', SI_FINISH: 'halt' }
  const fromEnv = resolveConfig({ cmdline, env }).config
  assert.equal(fromEnv.image, 'two')
  assert.equal(fromEnv.finish, 'poweroff')
  const fromFlags = resolveConfig({ cmdline, env, flags: { image: 'three', 'seed-wait': 'none' } }).config
  assert.equal(fromFlags.image, 'three')
  assert.deepEqual(fromFlags.seedWait, { kind: 'none' })
  assert.equal(fromFlags.origins.image, '--image')
  assert.equal(fromFlags.monitor, 'http://a:1', 'reports go to the image server by default')
})

test('the connection limit comes from si.max_peers, SI_MAX_PEERS or --max-peers, and is the download default otherwise', () => {
  assert.equal(resolveConfig({ cmdline: 'si.server=a' }).config.maxPeers, DOWNLOAD_OPTIONS.maxPeers.default)
  assert.equal(resolveConfig({ cmdline: 'si.server=a si.max_peers=200' }).config.maxPeers, 200)
  assert.equal(resolveConfig({ cmdline: 'si.server=a si.max_peers=200', env: { SI_MAX_PEERS: '300' } }).config.maxPeers, 300)
  const fromFlag = resolveConfig({ cmdline: 'si.server=a si.max_peers=200', flags: { 'max-peers': '40' } }).config
  assert.equal(fromFlag.maxPeers, 40)
  assert.equal(fromFlag.origins.maxPeers, '--max-peers')
})

test('missing and invalid keys fail with the key and where it came from', () => {
  assert.throws(() => resolveConfig({ cmdline: 'quiet' }), (e: Error) => isSiError(e, 'ERR_CONFIG') && /no image server: give si\.server=/.test(e.message))
  const bad: Array<[string, RegExp]> = [
    ['si.server=ftp://x', /kernel command line si\.server="ftp:\/\/x": expected http/],
    ['si.server=a si.seed_wait=sometimes', /si\.seed_wait="sometimes": expected none, swarm/],
    ['si.server=a BITTORRENT_POLLING_TIME=soon', /BITTORRENT_POLLING_TIME="soon": expected a number/],
    ['si.server=a si.finish=explode', /si\.finish="explode": expected reboot, poweroff, kexec, shell/],
    ['si.server=a si.node=bad/name', /si\.node="bad\/name"/],
    ['si.server=a MONITOR_SERVER=m MONITOR_PORT=99999', /MONITOR_PORT="99999": expected an integer from 1 to 65535/],
    ['si.server=a:70000', /expected http/],
    ['si.server=a si.max_peers=0', /si\.max_peers="0": expected an integer from 1 to 10000/],
    ['si.server=a si.max_peers=many', /si\.max_peers="many": expected/]
  ]
  for (const [cmdline, re] of bad) {
    assert.throws(() => resolveConfig({ cmdline }), (e: Error) => isSiError(e, 'ERR_CONFIG') && re.test(e.message), cmdline)
  }
  const { warnings } = resolveConfig({ cmdline: 'si.server=a si.imgae=x si.on_error=shell' })
  assert.deepEqual(warnings, ['kernel command line: unknown key si.imgae ignored'])
})

test('server addresses: URL, HOST:PORT or a bare host with the default port', () => {
  assert.equal(normalizeServer('http://h:1/'), 'http://h:1')
  assert.equal(normalizeServer('h.example:8080'), 'http://h.example:8080')
  assert.equal(normalizeServer('[fd00::1]'), 'http://[fd00::1]:8470')
  assert.equal(normalizeServer('http://h/path'), undefined)
})

test('a node without a host name is named after its first MAC', () => {
  assert.equal(defaultNodeName('node07', ['52:54:00:00:00:01']), 'node07')
  assert.equal(defaultNodeName('(none)', ['52:54:00:00:00:01']), 'mac-525400000001')
  assert.equal(defaultNodeName('localhost', []), undefined)
})

test('an invalid configuration is still reported to the server when its address is readable', () => {
  assert.deepEqual(reportTarget({ cmdline: 'IMAGESERVER=10.0.0.5 si.node=n7 si.seed_wait=bogus' }), { monitor: 'http://10.0.0.5:8470', node: 'n7' })
  assert.deepEqual(reportTarget({ cmdline: 'si.server=a MONITOR_SERVER=m si.monitor=http://mon:9' }), { monitor: 'http://mon:9', node: undefined })
  assert.deepEqual(reportTarget({ cmdline: 'si.server=ftp://x' }), { node: undefined })
})
