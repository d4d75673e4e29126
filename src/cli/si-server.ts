import { VERSION } from '../version.ts'

const argv = process.argv.slice(2)
if (argv.includes('--version')) {
  process.stdout.write(`si-server ${VERSION}\n`)
} else {
  process.stdout.write('usage: si-server serve --repo DIR --listen HOST:PORT\n')
}
