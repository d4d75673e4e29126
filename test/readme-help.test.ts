// The README's command reference must be what the executables print: a flag added,
// renamed or given a new default shows up here until the README says it too
// (`node --import tsx scripts/readme-help.ts --write` rewrites the blocks).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { actualHelp, helpBlocks, README } from '../scripts/readme-help.ts'
import { requireBuild } from './helpers/processes.ts'

const EVERY_COMMAND = [
  'si-agent --help', 'si-agent deploy --help', 'si-agent install --help', 'si-agent verify --help',
  'si-server --help', 'si-server serve --help', 'si-server image add --help', 'si-server image list --help',
  'si-server image rm --help', 'si-server image verify --help', 'si-server image capture --help', 'si-server override --help',
  'si-server key show --help', 'si-server token show --help', 'si-server monitor --help', 'si-server history --help'
]

test('the README shows the --help of every command, exactly as the executables print it', () => {
  requireBuild()
  const blocks = helpBlocks(readFileSync(README, 'utf8'))
  assert.deepEqual(blocks.map(b => b.command).sort(), [...EVERY_COMMAND].sort(), 'one block per command')
  for (const b of blocks) assert.equal(b.text, actualHelp(b.command), `README block of \`${b.command}\` (rewrite with scripts/readme-help.ts --write)`)
})

test('a block that drifted from the executable is caught', () => {
  requireBuild()
  const readme = ['`si-agent deploy --help`', '', '```text', 'usage: si-agent deploy (an old text)', '```', ''].join('\n')
  const [block] = helpBlocks(readme)
  assert.equal(block.command, 'si-agent deploy --help')
  assert.notEqual(block.text, actualHelp(block.command))
})

test('the README\'s Requirements list the Debian packages .ci/run installs, no more, no fewer', () => {
  const ci = readFileSync(new URL('../.ci/run', import.meta.url), 'utf8')
  const list = /APT_PACKAGES=\(\n([\s\S]*?)\n\)/.exec(ci)?.[1] ?? ''
  const installed = list.split('\n').map(l => l.trim().split(/\s+/)[0]).filter(p => p !== '' && !p.startsWith('#')).sort()
  const readme = readFileSync(README, 'utf8')
  const section = readme.slice(readme.indexOf('## Requirements'), readme.indexOf('\n## ', readme.indexOf('## Requirements') + 1))
  const listed = [...section.matchAll(/^\| `([a-z0-9.+-]+)` \|/gm)].map(m => m[1]).sort()
  assert.ok(installed.length > 5, 'APT_PACKAGES found in .ci/run')
  assert.deepEqual(listed, installed)
})
