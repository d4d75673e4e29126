// The folders are the architecture: data flows one way, and a module may import only from
// the roles below its own. A new import that breaks the layering fails here, naming it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const SRC = fileURLToPath(new URL('../src', import.meta.url))
/** Each role and the roles it may import (besides itself and the shared top-level modules). */
const MAY_IMPORT: Record<string, string[]> = {
  cli: ['config', 'formats', 'torrent', 'swarm', 'tracker', 'image', 'deploy', 'install', 'server'],
  install: ['config', 'formats', 'torrent', 'swarm', 'image', 'deploy'],
  server: ['config', 'formats', 'torrent', 'swarm', 'tracker', 'image'],
  deploy: ['config', 'formats', 'torrent', 'swarm', 'image'],
  image: ['formats', 'torrent'],
  tracker: ['config', 'torrent'],
  swarm: ['config', 'torrent'],
  torrent: [],
  formats: [],
  config: [],
  types: []
}

function sources (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(e => e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [])
}

function roleOf (file: string): string {
  const rel = relative(SRC, file).split('/')
  return rel.length === 1 ? '' : rel[0]
}

test('every import goes down the layers: nothing imports cli/, install/ and server/ know nothing of each other', () => {
  const broken: string[] = []
  for (const file of sources(SRC)) {
    const role = roleOf(file)
    const text = readFileSync(file, 'utf8')
    for (const m of text.matchAll(/^(?:import|export)\b[^'"]*?from\s+'(\.[^']+)'/gm)) {
      const target = roleOf(resolve(dirname(file), m[1]))
      if (target === '' || target === role) continue
      if (role === '' || !(MAY_IMPORT[role] ?? []).includes(target)) broken.push(`${relative(SRC, file)} imports ${m[1]} (${role || 'top level'} -> ${target})`)
    }
  }
  assert.deepEqual(broken, [])
})

test('the layering check sees a forbidden import', () => {
  assert.equal(roleOf(join(SRC, 'install/install.ts')), 'install')
  assert.ok(!MAY_IMPORT.install.includes('server') && !MAY_IMPORT.install.includes('cli'))
  assert.ok(!MAY_IMPORT.server.includes('install') && !MAY_IMPORT.server.includes('deploy'))
})

test('the scripts and the initramfs builder use the layers, never the executables\' command modules', () => {
  const root = resolve(SRC, '..')
  const broken: string[] = []
  for (const dir of ['scripts', 'initrd']) {
    for (const file of sources(join(root, dir))) {
      for (const m of readFileSync(file, 'utf8').matchAll(/^(?:import|export)\b[^'"]*?from\s+'(\.[^']+)'/gm)) {
        if (roleOf(resolve(dirname(file), m[1])) === 'cli') broken.push(`${relative(root, file)} imports ${m[1]}`)
      }
    }
  }
  assert.deepEqual(broken, [])
})
