// Settings of a download (`si-agent deploy`, and each image `si-agent install` fetches):
// every default here, once, with the help text --help and the README show.
import { option, switchOption, listOption, OptionValueError, type Values } from '../config/options.ts'
import { decimal, hostPort, integer, nonEmpty, oneOf, rate, serverUrl, type HostPort } from '../config/values.ts'
import { isPublicKeyText, PUBLIC_KEY_RULE } from '../formats/signature.ts'
import { DEFAULT_SWARM_CONFIG } from '../swarm/config.ts'
import { parseSeedWait, type SeedWait } from './seed-policy.ts'

export const TRANSPORTS = ['bt', 'http', 'multicast', 'auto'] as const
export type TransportName = typeof TRANSPORTS[number]

/**
 * The transport of a download beside the image (the tool bundle, an override): the
 * configured one, but never multicast, since udp-sender serves the one image the
 * administrator started it for.
 */
export function besideTheImage (transport: TransportName): TransportName {
  return transport === 'multicast' ? 'bt' : transport
}

/** SystemImager's BITTORRENT_UPLOAD_MIN default (KiB/s); the paper found 500 best on gigabit. */
export const DEFAULT_UPLOAD_MIN_KIB = 50
/** No verified byte for this long, with the swarm still incomplete: give up with a clear error. */
export const DEFAULT_SWARM_STALL_SECONDS = 300
/** No byte from an HTTP or multicast source for this long: the transfer has stalled. */
export const DEFAULT_STREAM_STALL_SECONDS = 60
/** `auto` falls back to HTTP when the swarm verifies no piece for this long. */
export const AUTO_SWARM_STALL_SECONDS = 30

/** Where `make initrd TRUSTED_KEY=...` puts the key: the agent trusts it without being told. */
export const BAKED_TRUSTED_KEY_FILE = '/etc/si/trusted-key'
/** Tokens are base64url (si-server token show); this bounds what a typo can be. */
const TOKEN = /^[A-Za-z0-9_-]{16,128}$/

/** A public key as si-server key show prints it (surrounding white space dropped). */
export function parseTrustedKey (text: string): string {
  if (!isPublicKeyText(text.trim())) throw new OptionValueError(PUBLIC_KEY_RULE)
  return text.trim()
}

function token (text: string): string {
  if (!TOKEN.test(text.trim())) throw new OptionValueError('16 to 128 base64url characters, as si-server token show prints them')
  return text.trim()
}

/** Whom the agent believes, and how it proves who it is. */
export const TRUST_OPTIONS = {
  trustedKey: option({
    flag: 'trusted-key', arg: 'KEY', param: 'si.trusted_key', env: 'SI_TRUSTED_KEY',
    help: 'use only torrents and plans this key signed (si-server key show); anything else fails with ERR_UNTRUSTED before a byte is written',
    defaultText: `${BAKED_TRUSTED_KEY_FILE} if the initramfs has it (make initrd TRUSTED_KEY=), else none: nothing is authenticated`,
    parse: parseTrustedKey
  }),
  token: option({
    flag: 'token', arg: 'TOKEN', param: 'si.token', env: 'SI_TOKEN',
    help: 'proves this node to the server without sending it (si-server token show): the plan and report credential then come sealed for this node',
    parse: token
  })
}

/** What every download takes, whether run alone (deploy) or by an install. */
export const DOWNLOAD_OPTIONS = {
  staging: option({
    flag: 'staging', arg: 'DIR', param: 'si.staging', aliases: ['BITTORRENT_STAGING'], env: 'SI_STAGING',
    help: 'where the tarball is staged',
    defaultText: 'RAM when free RAM exceeds the image + 100 MB, else .si-staging under the target',
    parse: nonEmpty('a directory')
  }),
  seedWait: option({
    flag: 'seed-wait', arg: 'POLICY', param: 'si.seed_wait', aliases: ['BITTORRENT_SEED_WAIT'], env: 'SI_SEED_WAIT',
    help: 'when to leave the swarm once done: none, upload-min[=KIB_PER_S] (when upload falls under it) or swarm (when the tracker reports no leecher left, or nobody fetched from us for 60 s)',
    default: { kind: 'upload-min', kibPerSecond: DEFAULT_UPLOAD_MIN_KIB } as SeedWait,
    defaultText: `upload-min=${DEFAULT_UPLOAD_MIN_KIB}`,
    parse: parseSeedWait
  }),
  uploadMin: option({
    flag: 'upload-min', arg: 'KIB_PER_S', param: 'si.upload_min', aliases: ['BITTORRENT_UPLOAD_MIN'], env: 'SI_UPLOAD_MIN',
    help: 'the threshold of --seed-wait upload-min',
    parse: decimal(0, 10_000_000)
  }),
  seedMaxSeconds: option({
    flag: 'seed-max', arg: 'SECONDS', param: 'si.seed_max', env: 'SI_SEED_MAX',
    help: 'longest time to keep seeding', default: 600, parse: decimal(0, 86_400)
  }),
  pollSeconds: option({
    flag: 'poll', arg: 'SECONDS', param: 'si.poll', aliases: ['BITTORRENT_POLLING_TIME'], env: 'SI_POLL',
    help: 'how often the seed-wait policy looks', default: 2, parse: decimal(0.1, 3600)
  }),
  peerPort: option({
    flag: 'peer-port', arg: 'PORT', param: 'si.peer_port', env: 'SI_PEER_PORT',
    help: 'TCP port for incoming peers', default: 0, defaultText: 'any free port', parse: integer(0, 65535)
  }),
  peerHost: option({
    flag: 'peer-host', arg: 'ADDRESS', param: 'si.peer_host', env: 'SI_PEER_HOST',
    help: 'address to listen on for peers', default: '0.0.0.0', defaultText: 'all addresses', parse: nonEmpty('an address')
  }),
  maxPeers: option({
    flag: 'max-peers', arg: 'N', param: 'si.max_peers', env: 'SI_MAX_PEERS',
    help: 'connections to other nodes, dialled or accepted; more are refused (the server\'s seeder is not counted)',
    default: DEFAULT_SWARM_CONFIG.maxConnections, parse: integer(1, 10_000)
  }),
  stallSeconds: option({
    flag: 'stall-seconds', arg: 'N', param: 'si.stall', env: 'SI_STALL',
    help: 'fail when no data is verified for this long',
    defaultText: `${DEFAULT_SWARM_STALL_SECONDS}; http and multicast: ${DEFAULT_STREAM_STALL_SECONDS}`,
    parse: decimal(1, 86_400)
  }),
  uploadLimit: option({
    flag: 'upload-limit', arg: 'RATE', param: 'si.upload_limit', env: 'SI_UPLOAD_LIMIT',
    help: 'cap upload to peers, e.g. 400mbit or 50MB (per second)', defaultText: 'no cap', parse: rate
  }),
  transport: option({
    flag: 'transport', arg: 'T', param: 'si.transport', env: 'SI_TRANSPORT',
    help: 'bt (the swarm), http (stream the image from the server\'s web seed, resuming a connection that drops or goes quiet for 15 s), ' +
      `multicast (udpcast's udp-receiver; the server runs udp-sender) or auto (the swarm, falling back to http when it verifies nothing for ${AUTO_SWARM_STALL_SECONDS} s)`,
    default: 'bt' as TransportName, parse: oneOf(TRANSPORTS)
  }),
  mcastInterface: option({
    flag: 'mcast-interface', arg: 'IF', param: 'si.mcast_interface', env: 'SI_MCAST_INTERFACE',
    help: 'network interface for --transport multicast', parse: nonEmpty('an interface name')
  }),
  mcastPortbase: option({
    flag: 'mcast-portbase', arg: 'P', param: 'si.mcast_portbase', env: 'SI_MCAST_PORTBASE',
    help: 'udpcast port base for --transport multicast', default: 9000, parse: integer(1, 65534)
  })
}

/** What the agent says while it works, and to whom. */
export const OUTPUT_OPTIONS = {
  json: switchOption({ flag: 'json', help: 'events as JSON lines on stdout instead of the progress bar' }),
  report: switchOption({ flag: 'report', default: true, env: 'SI_REPORT', param: 'si.report', help: 'do not report progress to the server' })
}

/** `si-agent deploy`: one image into one directory. */
export const DEPLOY_OPTIONS = {
  server: option({ flag: 'server', arg: 'URL', env: 'SI_SERVER', help: 'image server: http://HOST:PORT, HOST:PORT or HOST', parse: serverUrl }),
  image: option({ flag: 'image', arg: 'NAME[@N]', env: 'SI_IMAGE', help: 'image to install; NAME alone means its latest version', parse: nonEmpty('NAME or NAME@VERSION') }),
  torrent: option({ flag: 'torrent', arg: 'FILE|URL', help: 'use this torrent instead of asking a server (any BitTorrent tracker)', parse: nonEmpty('a file or URL') }),
  target: option({ flag: 'target', arg: 'DIR', help: 'where the image is extracted (created if missing)', parse: nonEmpty('a directory') }),
  node: option({ flag: 'node', arg: 'NAME', env: 'SI_NODE', help: 'name reported to the server', defaultText: 'the host name', parse: nonEmpty('a node name') }),
  peers: listOption<HostPort>({ flag: 'peer', arg: 'HOST:PORT', help: 'a peer to connect to at once (repeatable)', parseItem: hostPort }),
  ...TRUST_OPTIONS,
  ...DOWNLOAD_OPTIONS,
  ...OUTPUT_OPTIONS
}

export type DownloadSettings = Values<typeof DOWNLOAD_OPTIONS> & { peers?: HostPort[] }

/** The seed-wait policy a download follows: --upload-min sets the threshold of upload-min. */
export function effectiveSeedWait (s: Pick<DownloadSettings, 'seedWait' | 'uploadMin'>): SeedWait {
  if (s.uploadMin !== undefined && s.seedWait.kind === 'upload-min') return { kind: 'upload-min', kibPerSecond: s.uploadMin }
  return s.seedWait
}
