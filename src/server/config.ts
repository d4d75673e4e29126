// `si-server`'s settings: every default here, once, with the help text --help and the
// README show. The tracker's and the seeder's tunables live in their own config modules.
import { option, switchOption } from '../config/options.ts'
import { DEFAULT_TRACKER_CONFIG } from '../tracker/config.ts'
import { DEFAULT_SERVER_PORT, baseUrl, hostPort, integer, nonEmpty, rate } from '../config/values.ts'

export const DEFAULT_REPO = '/var/lib/swarmimager'
export const DEFAULT_PEER_PORT = 6881
/** Under the repository unless given: node plans, and the files for network boot. */
export const PLANS_DIR = 'plans'
export const BOOT_DIR = 'boot'

/** Every si-server command works on a repository. */
export const REPO_OPTIONS = {
  repo: option({ flag: 'repo', arg: 'DIR', env: 'SI_REPO', help: 'image repository', default: DEFAULT_REPO, parse: nonEmpty('a directory') })
}

export const SERVE_OPTIONS = {
  ...REPO_OPTIONS,
  listen: option({ flag: 'listen', arg: 'HOST:PORT', env: 'SI_LISTEN', help: 'HTTP API, tracker and web seed', default: { host: '0.0.0.0', port: DEFAULT_SERVER_PORT }, defaultText: `0.0.0.0:${DEFAULT_SERVER_PORT}`, parse: hostPort }),
  peerListen: option({ flag: 'peer-listen', arg: 'HOST:PORT', env: 'SI_PEER_LISTEN', help: 'BitTorrent seeder', defaultText: `the --listen address, port ${DEFAULT_PEER_PORT}`, parse: hostPort }),
  publicUrl: option({ flag: 'public-url', arg: 'URL', env: 'SI_PUBLIC_URL', help: 'base URL written into torrents', defaultText: 'the Host each client used', parse: baseUrl }),
  announceInterval: option({ flag: 'announce-interval', arg: 'S', help: 'tracker announce interval in seconds', defaultText: String(DEFAULT_TRACKER_CONFIG.intervalSeconds), parse: integer(1, 3600) }),
  uploadLimit: option({ flag: 'upload-limit', arg: 'RATE', env: 'SI_UPLOAD_LIMIT', help: 'cap the seeder\'s upload, e.g. 400mbit or 50MB (per second)', defaultText: 'no cap', parse: rate }),
  seed: switchOption({ flag: 'seed', default: true, help: 'track and serve over HTTP, but do not seed over BitTorrent' }),
  plans: option({ flag: 'plans', arg: 'DIR', help: 'node plans: hosts/, macs/, groups.conf + groups/, default.json (see docs/PXE.md)', defaultText: `REPO/${PLANS_DIR}`, parse: nonEmpty('a directory') }),
  bootDir: option({ flag: 'boot-dir', arg: 'DIR', help: 'vmlinuz and initrd.img served at /boot/ for iPXE', defaultText: `REPO/${BOOT_DIR}`, parse: nonEmpty('a directory') }),
  bootArgs: option({ flag: 'boot-args', arg: 'ARGS', help: 'extra kernel arguments in the generated /boot/boot.ipxe', parse: nonEmpty('kernel arguments') }),
  requireToken: switchOption({ flag: 'require-token', env: 'SI_REQUIRE_TOKEN', help: 'serve a node its plan and report credential only when it proves itself with si.token (see docs/SECURITY.md)' })
}
