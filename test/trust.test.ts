// Signed content and node credentials (docs/SECURITY.md): each defence, with the attack
// from a host on the provisioning LAN that it must stop. Real servers on loopback (a
// trusted one, a rogue one with its own key, one that requires tokens), the real agent.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSiError } from '../src/errors.ts'
import { ImageServer } from '../src/server/image-server.ts'
import { fetchPlan } from '../src/install/plan-client.ts'
import { requestCredential } from '../src/deploy/credential-client.ts'
import { loadTorrent, torrentUrlFor } from '../src/deploy/torrent-source.ts'
import { effectiveTrustedKey, readBakedKey, UNAUTHENTICATED_WARNING } from '../src/deploy/trust.ts'
import { resolveConfig } from '../src/install/config.ts'
import { redactSecrets } from '../src/install/post-install.ts'
import { newNonce, proofOf, PROOF_HEADER, REPORT_AUTH_HEADER, reportAuth } from '../src/formats/node-auth.ts'
import { checkSignature, Signer, SIGNATURE_HEADER } from '../src/formats/signature.ts'
import { TORRENT_STATEMENT_KEY } from '../src/formats/image-statement.ts'
import { createTorrent } from '../src/torrent/metainfo.ts'
import { decodeBencode, encodeBencode, isBencodeDict, type BencodeDict } from '../src/torrent/bencode.ts'
import { makeTree } from './helpers/trees.ts'
import { jsonEvents, requireBuild, run, SI_AGENT, SI_SERVER, type RunResult } from './helpers/processes.ts'

const ROOT_PASSWORD = 'hunter2-correct-horse'
const PLAN = {
  image: 'golden',
  disks: [{ device: 'auto', partitions: [{ size: 'rest', fs: 'ext4', mount: '/' }] }],
  postInstall: [{ name: 'root password', run: 'echo "root:$SI_SECRET_ROOT_PASSWORD" | chpasswd' }]
}

let dir: string
let trusted: ImageServer
let rogue: ImageServer
let guarded: ImageServer
let key: string
let rogueKey: string

function urlOf (s: ImageServer): string { return `http://127.0.0.1:${s.httpPort}` }

async function writePlans (plans: string, image: string): Promise<void> {
  await mkdir(join(plans, 'hosts'), { recursive: true })
  await mkdir(join(plans, 'groups'), { recursive: true })
  await writeFile(join(plans, 'default.json'), JSON.stringify({ ...PLAN, image, postInstall: [] }))
  await writeFile(join(plans, 'hosts/db01.json'), JSON.stringify({ ...PLAN, image, secrets: { ROOT_PASSWORD } }))
  await writeFile(join(plans, 'groups.conf'), 'rack1 r1-*\n')
  await writeFile(join(plans, 'groups/rack1.json'), JSON.stringify({ ...PLAN, image, postInstall: [] }))
}

async function startServer (name: string, tree: string, extra: { requireToken?: boolean } = {}): Promise<ImageServer> {
  const plans = join(dir, `${name}-plans`)
  await writePlans(plans, 'golden')
  const server = new ImageServer({ repoDir: join(dir, `${name}-repo`), plansDir: plans, host: '127.0.0.1', port: 0, peerPort: 0, seed: false, ...extra })
  await server.repo.add('golden', { from: tree, compression: 'none' })
  await server.start()
  return server
}

before(async () => {
  requireBuild()
  dir = await mkdtemp(join(tmpdir(), 'si-trust-'))
  await makeTree(join(dir, 'good'), 1, 'good')
  // What the rogue server served: a uid-0 user and an authorized_keys.
  await mkdir(join(dir, 'evil/etc'), { recursive: true })
  await mkdir(join(dir, 'evil/root/.ssh'), { recursive: true })
  await writeFile(join(dir, 'evil/etc/passwd'), 'root:x:0:0::/root:/bin/sh\nintruder:x:0:0::/:/bin/sh\n')
  await writeFile(join(dir, 'evil/root/.ssh/authorized_keys'), 'ssh-ed25519 AAAA intruder\n')
  trusted = await startServer('trusted', join(dir, 'good'))
  rogue = await startServer('rogue', join(dir, 'evil'))
  guarded = await startServer('guarded', join(dir, 'good'), { requireToken: true })
  key = trusted.signer!.publicKey
  rogueKey = rogue.signer!.publicKey
})

after(async () => {
  await trusted?.stop()
  await rogue?.stop()
  await guarded?.stop()
  await rm(dir, { recursive: true, force: true })
})

const deploy = (server: ImageServer | string, target: string, ...args: string[]): Promise<RunResult> =>
  run(SI_AGENT, ['deploy', '--no-report', '--json', '--transport', 'http', '--seed-wait', 'none', ...(typeof server === 'string' ? ['--torrent', server] : ['--server', urlOf(server), '--image', 'golden']), '--target', target, ...args], { timeoutMs: 60_000 })

/** Exit 1 with an ERR_UNTRUSTED error event (--json) naming why. */
function assertUntrusted (r: RunResult, mentions: RegExp): void {
  assert.equal(r.code, 1, r.stderr)
  const errors = jsonEvents(r.stdout).filter(e => e.type === 'error')
  assert.equal(errors.length, 1, r.stdout)
  assert.equal(errors[0].code, 'ERR_UNTRUSTED')
  assert.match(String(errors[0].message), mentions)
}

/** The target as it was: its names and each file's bytes. */
async function snapshot (target: string): Promise<string> {
  const names = (await readdir(target, { recursive: true })).sort()
  const files = await Promise.all(names.map(async n => (await stat(join(target, n))).isFile() ? `${n}=${(await readFile(join(target, n))).toString('base64')}` : n))
  return files.join('\n')
}

test('si-server key show prints the key the server signs with, made once, owner-only, the same after a restart', async () => {
  const repo = join(dir, 'trusted-repo')
  const shown = await run(SI_SERVER, ['key', 'show', '--repo', repo])
  assert.equal(shown.code, 0, shown.stderr)
  assert.equal(shown.stdout, `${key}\n`)
  assert.match(key, /^ed25519:[A-Za-z0-9_-]{43}$/)
  assert.equal((await stat(join(repo, 'keys/signing.key'))).mode & 0o777, 0o600)
  assert.equal((await stat(join(repo, 'keys'))).mode & 0o777, 0o700)
  assert.notEqual(key, rogueKey, 'each repository has its own key')

  const fresh = join(dir, 'fresh-repo')
  const made = await run(SI_SERVER, ['key', 'show', '--repo', fresh])
  assert.equal(made.code, 0, made.stderr)
  assert.equal((await run(SI_SERVER, ['key', 'show', '--repo', fresh])).stdout, made.stdout, 'made on first use, then kept')
  await chmod(join(fresh, 'keys/signing.key'), 0o644)
  const exposed = await run(SI_SERVER, ['key', 'show', '--repo', fresh])
  assert.equal(exposed.code, 1)
  assert.match(exposed.stderr, /ERR_KEY: .*signing\.key is accessible to group or others \(mode 0644\): run chmod 600/)
})

test('an agent given the trusted key installs from its server, and says nothing about authentication', async () => {
  const target = join(dir, 'target-ok')
  const r = await deploy(trusted, target, '--trusted-key', key)
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(jsonEvents(r.stdout).filter(e => e.type === 'warning'), [])
  assert.ok((await readdir(target)).length > 0)
  // atime: reading the tree to check it changes it.
  const verified = await run(SI_AGENT, ['verify', '--server', urlOf(trusted), '--image', 'golden', '--target', target, '--ignore', 'atime', '--trusted-key', key])
  assert.equal(verified.code, 0, verified.stdout + verified.stderr)
  assert.doesNotMatch(verified.stderr, /warning/)
  // The rogue's image compared against this tree: refused before any comparison.
  const rogueVerify = await run(SI_AGENT, ['verify', '--server', urlOf(rogue), '--image', 'golden', '--target', target, '--trusted-key', key])
  assert.equal(rogueVerify.code, 2, 'an error, not a difference')
  assert.match(rogueVerify.stderr, /ERR_UNTRUSTED: .*not by the trusted key/)
})

test('without a trusted key the agent installs as before, and warns once that nothing is authenticated', async () => {
  const r = await deploy(trusted, join(dir, 'target-open'))
  assert.equal(r.code, 0, r.stderr)
  const warnings = jsonEvents(r.stdout).filter(e => e.type === 'warning')
  assert.deepEqual(warnings.map(w => w.message), [UNAUTHENTICATED_WARNING])
})

test('a rogue server with its own key: ERR_UNTRUSTED, and the target is left as it was', async () => {
  const target = join(dir, 'target-rogue')
  const r = await deploy(rogue, target, '--trusted-key', key)
  assertUntrusted(r, new RegExp(`signed by ${rogueKey}, not by the trusted key ${key}`))
  await assert.rejects(readdir(target), /ENOENT/, 'no target directory made')

  // A target that exists keeps every byte.
  const existing = join(dir, 'target-existing')
  await mkdir(existing)
  await writeFile(join(existing, 'keep'), 'as it was')
  const before = await snapshot(existing)
  assertUntrusted(await deploy(rogue, existing, '--trusted-key', key), /not by the trusted key/)
  assert.equal(await snapshot(existing), before)
  // The same rogue server, the agent not told whom to trust: the very attack of the issue.
  const open = await deploy(rogue, join(dir, 'target-rogue-open'))
  assert.equal(open.code, 0, open.stderr)
  assert.match(await readFile(join(dir, 'target-rogue-open/etc/passwd'), 'utf8'), /intruder:x:0:0/)
})

test('a hand-made torrent, and a signed statement moved onto another torrent, are refused', async () => {
  const target = join(dir, 'target-handmade')
  const handmade = join(dir, 'handmade.torrent')
  await writeFile(handmade, await createTorrent({ file: (await rogue.repo.resolve('golden')).tarPath, name: 'image.tar', pieceLength: 16384 }))
  assertUntrusted(await deploy(handmade, target, '--trusted-key', key), /carries no signed statement/)

  // The trusted server's statement and signature, around the rogue's info dictionary.
  const signed = decodeBencode(Buffer.from(await (await fetch(torrentUrlFor(urlOf(trusted), 'golden'))).arrayBuffer())) as BencodeDict
  const evil = decodeBencode(Buffer.from(await (await fetch(torrentUrlFor(urlOf(rogue), 'golden'))).arrayBuffer())) as BencodeDict
  const spliced = join(dir, 'spliced.torrent')
  await writeFile(spliced, encodeBencode({ ...signed, info: evil.info } as BencodeDict))
  assertUntrusted(await deploy(spliced, target, '--trusted-key', key), /the signed statement names info hash "[0-9a-f]{40}", not "[0-9a-f]{40}"/)
  await assert.rejects(readdir(target), /ENOENT/)

  // A torrent saved from the trusted server is one it vouched for.
  const saved = join(dir, 'saved.torrent')
  await writeFile(saved, encodeBencode(signed))
  assert.equal((await loadTorrent({ torrent: saved }, { trustedKey: key })).infoHashHex, (await trusted.repo.resolve('golden')).infoHashHex)
})

test('a recorded answer of the trusted server cannot be replayed to a node that asked afresh', async () => {
  // Recorded earlier, for another request (its nonce): served now by a host pretending to be the server.
  const recorded = Buffer.from(await (await fetch(torrentUrlFor(urlOf(trusted), 'golden', newNonce()))).arrayBuffer())
  assert.ok(isBencodeDict(decodeBencode(recorded)) && TORRENT_STATEMENT_KEY in (decodeBencode(recorded) as BencodeDict))
  const replayer = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/x-bittorrent' }); res.end(recorded) })
  await new Promise<void>(resolve => replayer.listen(0, '127.0.0.1', resolve))
  try {
    const port = (replayer.address() as { port: number }).port
    await assert.rejects(loadTorrent({ server: `http://127.0.0.1:${port}`, image: 'golden' }, { trustedKey: key }),
      (e: Error) => isSiError(e, 'ERR_UNTRUSTED') && /names nonce .*not/.test(e.message))
  } finally {
    replayer.closeAllConnections()
    await new Promise(resolve => replayer.close(resolve))
  }
})

/** A host between the node and the server that rewrites what the server answers. */
async function withProxy (upstream: string, rewrite: (body: Buffer, headers: http.IncomingHttpHeaders) => { body: Buffer; headers: http.OutgoingHttpHeaders }, fn: (url: string) => Promise<void>): Promise<void> {
  const proxy = http.createServer((req, res) => {
    void (async () => {
      const r = await fetch(`${upstream}${req.url ?? '/'}`, { headers: req.headers[PROOF_HEADER] !== undefined ? { [PROOF_HEADER]: String(req.headers[PROOF_HEADER]) } : {} })
      const headers = Object.fromEntries(r.headers.entries())
      const out = rewrite(Buffer.from(await r.arrayBuffer()), headers)
      res.writeHead(r.status, { ...out.headers, 'content-length': out.body.length })
      res.end(out.body)
    })().catch(() => { res.writeHead(502); res.end() })
  })
  await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
  try {
    await fn(`http://127.0.0.1:${(proxy.address() as { port: number }).port}`)
  } finally {
    proxy.closeAllConnections()
    await new Promise(resolve => proxy.close(resolve))
  }
}

test('a plan altered on the way, unsigned, or signed by another key is refused', async () => {
  const retry = { attempts: 1, retryMs: 0, trustedKey: key }
  const id = { node: 'n1', macs: ['52:54:00:00:00:01'] }
  assert.equal((await fetchPlan(urlOf(trusted), id, retry)).plan.image, 'golden')
  const keep = (body: Buffer, headers: http.IncomingHttpHeaders): { body: Buffer; headers: http.OutgoingHttpHeaders } => ({ body, headers: { [SIGNATURE_HEADER]: headers[SIGNATURE_HEADER] ?? '' } })
  await withProxy(urlOf(trusted), (body, headers) => ({ ...keep(body, headers), body: Buffer.from(body.toString().replace('"golden"', '"rogue0"')) }), async url => {
    await assert.rejects(fetchPlan(url, id, retry), (e: Error) => isSiError(e, 'ERR_UNTRUSTED') && /signature does not match the content/.test(e.message))
  })
  await withProxy(urlOf(trusted), body => ({ body, headers: {} }), async url => {
    await assert.rejects(fetchPlan(url, id, retry), (e: Error) => isSiError(e, 'ERR_UNTRUSTED') && /is not signed/.test(e.message))
  })
  await withProxy(urlOf(trusted), keep, async url => {
    assert.equal((await fetchPlan(url, id, retry)).plan.image, 'golden', 'passed on unaltered: accepted')
  })
  await assert.rejects(fetchPlan(urlOf(rogue), id, retry), (e: Error) => isSiError(e, 'ERR_UNTRUSTED') && new RegExp(`signed by ${rogueKey}`).test(e.message))
  // The signature covers what the bytes are for: a signed plan is no image statement.
  const r = await fetch(`${urlOf(trusted)}/api/plan?node=n1&nonce=${newNonce()}`)
  const body = Buffer.from(await r.arrayBuffer())
  checkSignature(key, 'plan', body, r.headers.get(SIGNATURE_HEADER) ?? undefined, 'plan')
  assert.throws(() => checkSignature(key, 'image', body, r.headers.get(SIGNATURE_HEADER) ?? undefined, 'plan'), /signed as something else/)
})

test('the trusted key comes from the flag, the kernel command line or the initramfs; a baked key is not overridden', async () => {
  const other = Signer.generate().publicKey
  assert.equal(resolveConfig({ cmdline: `si.server=h si.trusted_key=${key}` }).config.trustedKey, key)
  assert.equal(resolveConfig({ cmdline: 'si.server=h', bakedTrustedKey: key }).config.trustedKey, key)
  assert.equal(resolveConfig({ cmdline: 'si.server=h' }).config.trustedKey, undefined)
  assert.throws(() => resolveConfig({ cmdline: `si.server=h si.trusted_key=${other}`, bakedTrustedKey: key }), (e: Error) => isSiError(e, 'ERR_CONFIG') && /initramfs has .* baked in/.test(e.message))
  assert.throws(() => resolveConfig({ cmdline: 'si.server=h si.trusted_key=ed25519:nope' }), /si\.trusted_key/)
  assert.equal(effectiveTrustedKey(key, 'flag', key), key)

  const file = join(dir, 'baked-key')
  assert.equal(await readBakedKey(file), undefined)
  await writeFile(file, `${key}\n`)
  assert.equal(await readBakedKey(file), key)
  await writeFile(file, 'garbage\n')
  await assert.rejects(readBakedKey(file), (e: Error) => isSiError(e, 'ERR_CONFIG') && /holds no valid public key/.test(e.message))
})

async function postReport (server: ImageServer, node: string, event: object, credential?: string): Promise<number> {
  const body = JSON.stringify(event)
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (credential !== undefined) headers[REPORT_AUTH_HEADER] = reportAuth(credential, node, body)
  return (await fetch(`${urlOf(server)}/api/nodes/${node}/events`, { method: 'POST', body, headers })).status
}

test('a report counts only with the node\'s own credential, which survives a server restart', async () => {
  const plans = join(dir, 'reports-plans')
  await writePlans(plans, 'golden')
  const repoDir = join(dir, 'reports-repo')
  const open = (): ImageServer => new ImageServer({ repoDir, plansDir: plans, host: '127.0.0.1', port: 0, peerPort: 0, seed: false })
  let server = open()
  await server.start()
  try {
    const db01 = await requestCredential(urlOf(server), { node: 'db01', macs: [] }, { attempts: 1 })
    const db02 = await requestCredential(urlOf(server), { node: 'db02', macs: [] }, { attempts: 1 })
    assert.equal(await postReport(server, 'db01', { type: 'phase', phase: 'download' }, db01), 200)
    const fleet = JSON.stringify(server.fleet.list())
    assert.equal(await postReport(server, 'db01', { type: 'error', phase: 'failed', code: 'ERR_X', message: 'invented' }), 401, 'no credential')
    assert.equal(await postReport(server, 'db01', { type: 'error', phase: 'failed', code: 'ERR_X', message: 'invented' }, db02), 401, 'another node\'s credential')
    assert.equal(await postReport(server, 'ghost', { type: 'done', phase: 'done' }, db01), 401, 'a node that does not exist')
    assert.equal(JSON.stringify(server.fleet.list()), fleet, 'the fleet view is unchanged')
    assert.equal(server.fleet.list().find(n => n.node === 'ghost'), undefined)

    await server.stop()
    server = open()
    await server.start()
    assert.equal(await postReport(server, 'db01', { type: 'phase', phase: 'disks' }, db01), 200, 'the same credential after a restart')
    assert.equal(await requestCredential(urlOf(server), { node: 'db01', macs: [] }, { attempts: 1 }), db01, 'a node that reinstalls gets the same one')
  } finally {
    await server.stop()
  }
})

async function token (server: ImageServer, ...args: string[]): Promise<string> {
  const r = await run(SI_SERVER, ['token', 'show', '--repo', server.repo.root, ...args])
  assert.equal(r.code, 0, r.stderr)
  return r.stdout.trim()
}

test('with --require-token a plan and a credential go only to a node that proves itself', async () => {
  const url = urlOf(guarded)
  const retry = { attempts: 1, retryMs: 0 }
  const deployment = await token(guarded)
  const rack1 = await token(guarded, '--group', 'rack1')
  const db01 = await token(guarded, '--node', 'db01')

  assert.equal((await fetch(`${url}/api/plan?node=n1`)).status, 401)
  await assert.rejects(fetchPlan(url, { node: 'n1', macs: [] }, retry), (e: Error) => isSiError(e, 'ERR_UNAUTHORIZED') && /si\.token/.test(e.message))
  await assert.rejects(requestCredential(url, { node: 'n1', macs: [] }, retry), (e: Error) => isSiError(e, 'ERR_UNAUTHORIZED'))
  assert.equal((await fetchPlan(url, { node: 'n1', macs: [], token: deployment }, { ...retry, trustedKey: guarded.signer!.publicKey })).plan.image, 'golden')
  assert.equal((await fetchPlan(url, { node: 'r1-07', macs: [], token: rack1 }, retry)).plan.image, 'golden')
  assert.equal((await fetchPlan(url, { node: 'db01', macs: [], token: db01 }, retry)).plan.secrets.ROOT_PASSWORD, ROOT_PASSWORD)
  const refused = (e: Error): boolean => isSiError(e, 'ERR_UNAUTHORIZED') && /matches no token/.test(e.message)
  await assert.rejects(fetchPlan(url, { node: 'n1', macs: [], token: rack1 }, retry), refused, 'a group token outside its group')
  await assert.rejects(fetchPlan(url, { node: 'db02', macs: [], token: db01 }, retry), refused, 'one node\'s credential for another')
  await assert.rejects(fetchPlan(url, { node: 'n1', macs: [], token: await token(trusted) }, retry), refused, 'another repository\'s token')
  // The credential a proven node gets is the one its reports are checked against.
  const credential = await requestCredential(url, { node: 'r1-07', macs: [], token: rack1 }, retry)
  assert.equal(await postReport(guarded, 'r1-07', { type: 'phase', phase: 'disks' }, credential), 200)
})

test('a plan with secrets goes only to the node that proved itself, sealed, and its secrets show nowhere', async () => {
  const url = urlOf(trusted)
  const plain = await fetch(`${url}/api/plan?node=db01`)
  assert.equal(plain.status, 403, 'not even on an open server')
  assert.doesNotMatch(await plain.text(), new RegExp(ROOT_PASSWORD))

  const db01 = await token(trusted, '--node', 'db01')
  const nonce = newNonce()
  const sealed = await fetch(`${url}/api/plan?node=db01&nonce=${nonce}`, { headers: { [PROOF_HEADER]: proofOf(db01, 'plan', 'db01', nonce) } })
  assert.equal(sealed.status, 200)
  const wire = await sealed.text()
  assert.doesNotMatch(wire, new RegExp(ROOT_PASSWORD), 'not readable on the wire')
  assert.doesNotMatch(wire, /chpasswd/, 'nor the rest of the plan')
  const fetched = await fetchPlan(url, { node: 'db01', macs: [], token: db01 }, { attempts: 1, retryMs: 0, trustedKey: key })
  assert.equal(fetched.plan.secrets.ROOT_PASSWORD, ROOT_PASSWORD)
  assert.equal(fetched.plan.postInstall[0].run, PLAN.postInstall[0].run, 'the step names the secret, never holds it')

  // What the node reports and prints has the value replaced.
  assert.equal(redactSecrets(`chpasswd: bad password ${ROOT_PASSWORD}!`, fetched.plan.secrets), 'chpasswd: bad password [secret ROOT_PASSWORD]!')
  const credential = await requestCredential(url, { node: 'db01', macs: [], token: db01 }, { attempts: 1 })
  assert.equal(await postReport(trusted, 'db01', { type: 'phase', phase: 'plan', detail: 'plan hosts/db01.json: 1 post-install step(s) with 1 secret(s)' }, credential), 200)
  assert.doesNotMatch(await (await fetch(`${url}/api/nodes`)).text(), new RegExp(ROOT_PASSWORD))
})
