// The README's command reference is the executables' own --help: each block under a line
// `si-agent deploy --help` (the command in backquotes alone on its line) is that output.
// `--write` rewrites the blocks from dist/ (after make build); without it, the blocks
// that differ are listed and the exit status is 1. test/readme-help.test.ts runs the check.
//   node --import tsx scripts/readme-help.ts [--write]
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { switchOption } from '../src/config/options.ts'
import { noExtraPositionals, readCommandLine } from '../src/config/command-line.ts'
import { commandHelp } from '../src/config/help.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const README = join(ROOT, 'README.md')
const EXECUTABLES = new Set(['si-agent', 'si-server'])
const COMMAND_LINE = /^`((si-agent|si-server)(?: [a-z-]+)* --help)`$/
const FENCE_OPEN = '```text'
const FENCE_CLOSE = '```'

export interface HelpBlock {
  /** e.g. "si-agent deploy --help" */
  command: string
  /** line index of the block's first text line and one past its last */
  start: number
  end: number
  text: string
}

export function helpBlocks (readme: string): HelpBlock[] {
  const lines = readme.split('\n')
  const blocks: HelpBlock[] = []
  for (let i = 0; i < lines.length; i++) {
    const m = COMMAND_LINE.exec(lines[i])
    if (m === null || !EXECUTABLES.has(m[2])) continue
    let open = i + 1
    while (open < lines.length && lines[open].trim() === '') open++
    if (lines[open] !== FENCE_OPEN) continue
    const close = lines.indexOf(FENCE_CLOSE, open + 1)
    if (close < 0) continue
    blocks.push({ command: m[1], start: open + 1, end: close, text: lines.slice(open + 1, close).join('\n') + '\n' })
  }
  return blocks
}

/** What the built executable prints for the block's command. */
export function actualHelp (command: string): string {
  const [exe, ...args] = command.split(' ')
  return execFileSync(join(ROOT, 'dist', exe), args, { encoding: 'utf8' })
}

export function rewrite (readme: string): string {
  const lines = readme.split('\n')
  for (const b of helpBlocks(readme).reverse()) lines.splice(b.start, b.end - b.start, ...actualHelp(b.command).trimEnd().split('\n'))
  return lines.join('\n')
}

const OPTIONS = { write: switchOption({ flag: 'write', help: 'rewrite the blocks in README.md from dist/' }) }
const USAGE = commandHelp(['node --import tsx scripts/readme-help.ts [--write]'], OPTIONS)

function main (argv: string[]): number {
  const { values, positional, help } = readCommandLine(argv, OPTIONS)
  if (help) { process.stdout.write(USAGE); return 0 }
  noExtraPositionals(positional, 0, USAGE)
  const readme = readFileSync(README, 'utf8')
  if (values.write) {
    writeFileSync(README, rewrite(readme))
    process.stderr.write(`readme-help: ${helpBlocks(readme).length} blocks written\n`)
    return 0
  }
  const stale = helpBlocks(readme).filter(b => b.text !== actualHelp(b.command))
  for (const b of stale) process.stderr.write(`readme-help: the block of \`${b.command}\` differs from the executable's output\n`)
  return stale.length === 0 ? 0 : 1
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2))
