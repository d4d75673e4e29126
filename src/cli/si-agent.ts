import { VERSION } from '../version.ts'

const argv = process.argv.slice(2)
if (argv.includes('--version')) {
  process.stdout.write(`si-agent ${VERSION}\n`)
} else {
  process.stdout.write('usage: si-agent deploy --server URL --image NAME[@VERSION] --target DIR\n')
}
