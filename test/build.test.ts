// The executables built by build.mjs (`make test` builds them first) must be
// self-contained: no node on PATH, no node_modules, no repository around them.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const VERSION: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version
const EXECUTABLES = ['si-agent', 'si-server']
const ELF_MAGIC = Buffer.from('\x7fELF', 'latin1')

function exePath (name: string): string {
  const file = join(ROOT, 'dist', name)
  assert.ok(existsSync(file), `${file} is missing: run make build first`)
  return file
}

function readHead (file: string, length: number): Buffer {
  const buf = Buffer.alloc(length)
  const fd = openSync(file, 'r')
  try {
    readSync(fd, buf, 0, length, 0)
  } finally {
    closeSync(fd)
  }
  return buf
}

/**
 * Run `file args` with cwd an empty temporary directory, PATH a directory that
 * holds only `sh` (so no `node`), and no NODE_* variables. With copy, the
 * executable is first copied into that temporary directory, away from the
 * repository and its node_modules.
 */
function runIsolated (file: string, args: string[], copy = false) {
  const dir = mkdtempSync(join(tmpdir(), 'si-build-test-'))
  try {
    const bin = join(dir, 'bin')
    mkdirSync(bin)
    symlinkSync('/bin/sh', join(bin, 'sh'))
    let exe = file
    if (copy) {
      exe = join(dir, 'exe')
      copyFileSync(file, exe)
    }
    const env = { PATH: bin, HOME: dir, LANG: 'C' } // nothing inherited: no NODE_PATH, NODE_OPTIONS
    const r = spawnSync(exe, args, { cwd: dir, env, encoding: 'utf8', timeout: 30_000 })
    const sh = spawnSync('sh', ['-c', 'command -v node || echo none'], { cwd: dir, env, encoding: 'utf8' })
    assert.equal(sh.stdout, 'none\n', 'no node on the PATH of the run')
    return r
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

for (const name of EXECUTABLES) {
  test(`dist/${name} is an executable ELF file`, () => {
    const file = exePath(name)
    const st = statSync(file)
    assert.ok(st.isFile())
    assert.equal(st.mode & 0o111, 0o111, 'executable bits set')
    assert.deepEqual(readHead(file, ELF_MAGIC.length), ELF_MAGIC)
  })

  test(`dist/${name} --version runs without node on PATH`, () => {
    const r = runIsolated(exePath(name), ['--version'])
    assert.equal(r.error, undefined)
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stdout, `${name} ${VERSION}\n`)
    assert.equal(r.stderr, '', 'no SEA warning or other noise on stderr')
  })

  test(`dist/${name} does not depend on node_modules (copied to an empty directory)`, () => {
    const r = runIsolated(exePath(name), ['--version'], true)
    assert.equal(r.error, undefined)
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stdout, `${name} ${VERSION}\n`)
  })
}
