// An emulated cluster on one machine: a namespace holding a bridge, and one namespace per
// host (the image server and N nodes), each joined to the bridge by a veth pair whose two
// ends are shaped, so each host has its own link rate up and down. Addresses come from
// 10.77.0.0/16 and exist only inside these namespaces.
import { SiError } from '../../src/errors.ts'
import { run } from './exec.ts'
import { createNamespace, deleteNamespace, nsPrefixFor } from './netns.ts'
import { dropOnIngress, realFrames, shapeEgress, type LinkSpec } from './shaping.ts'

export const SUBNET_PREFIX = 16
export const SERVER_ADDRESS = '10.77.0.1'
export const HOST_DEV = 'eth0'
const BRIDGE_DEV = 'br0'
export const MULTICAST_ROUTE = '224.0.0.0/4'
export const MAX_NODES = 250

export interface HostSpec { name: string; link: LinkSpec }

export interface Host {
  name: string
  ns: string
  address: string
  /** the bridge-side end of the host's veth: its tx is the host's download */
  port: string
  link: LinkSpec
}

export interface ClusterSpec {
  /** distinguishes clusters built by the same process one after another */
  tag: string
  server: LinkSpec
  nodes: LinkSpec[]
  /** TCP congestion control in every namespace (a new namespace would inherit the machine's) */
  tcpCongestion: string
}

/** Bytes through each host's link since the namespace was made, as the bridge saw them. */
export interface LinkCounters { [host: string]: { sent: number; received: number } }

/**
 * Why a link carries less than its rate: each host's TCP segments sent and sent again
 * (its own kernel's count), and the packets its shaped queues dropped (upload: the host's
 * egress; download: the bridge port's egress towards it). Since the namespace was made.
 */
export interface HostHealth { tcpSegmentsOut: number; tcpRetransmitted: number; uploadDrops: number; downloadDrops: number }
export interface LinkHealth { [host: string]: HostHealth }

export class Cluster {
  readonly bridgeNs: string
  readonly server: Host
  readonly nodes: Host[]
  private readonly created: string[] = []

  private constructor (readonly spec: ClusterSpec) {
    const prefix = `${nsPrefixFor()}${spec.tag}-`
    this.bridgeNs = `${prefix}br`
    this.server = { name: 'server', ns: `${prefix}server`, address: SERVER_ADDRESS, port: 'ps', link: spec.server }
    this.nodes = spec.nodes.map((link, i) => ({ name: `n${i + 1}`, ns: `${prefix}n${i + 1}`, address: `10.77.1.${i + 1}`, port: `p${i + 1}`, link }))
  }

  get hosts (): Host[] { return [this.server, ...this.nodes] }

  /** Builds the whole cluster; on failure removes what it made before rethrowing. */
  static async create (spec: ClusterSpec): Promise<Cluster> {
    if (spec.nodes.length < 1 || spec.nodes.length > MAX_NODES) throw new SiError('ERR_BENCH', `cluster of ${spec.nodes.length} nodes: 1..${MAX_NODES} supported`)
    const cluster = new Cluster(spec)
    try {
      await cluster.build()
    } catch (err) {
      await cluster.destroy()
      throw err
    }
    return cluster
  }

  private async build (): Promise<void> {
    await this.addNamespace(this.bridgeNs)
    const br = this.bridgeNs
    // Snooping off: multicast is flooded to every port, as on an unmanaged switch.
    await run('ip', ['-n', br, 'link', 'add', BRIDGE_DEV, 'type', 'bridge', 'mcast_snooping', '0', 'stp_state', '0', 'forward_delay', '0'])
    await run('ip', ['-n', br, 'link', 'set', BRIDGE_DEV, 'up'])
    const lossy = this.hosts.some(h => (h.link.loss ?? 0) > 0)
    for (const host of this.hosts) await this.addHost(host, lossy)
  }

  private async addHost (host: Host, realFramesEverywhere: boolean): Promise<void> {
    const br = this.bridgeNs
    await this.addNamespace(host.ns)
    await run('ip', ['netns', 'exec', host.ns, 'sysctl', '-qw', `net.ipv4.tcp_congestion_control=${this.spec.tcpCongestion}`])
    await run('ip', ['link', 'add', HOST_DEV, 'netns', host.ns, 'type', 'veth', 'peer', 'name', host.port, 'netns', br])
    await run('ip', ['-n', br, 'link', 'set', host.port, 'master', BRIDGE_DEV, 'up'])
    // udpcast finds its peers by broadcast: the address needs its broadcast set.
    await run('ip', ['-n', host.ns, 'addr', 'add', `${host.address}/${SUBNET_PREFIX}`, 'brd', '+', 'dev', HOST_DEV])
    await run('ip', ['-n', host.ns, 'link', 'set', HOST_DEV, 'up'])
    await run('ip', ['-n', host.ns, 'route', 'add', MULTICAST_ROUTE, 'dev', HOST_DEV])
    if (realFramesEverywhere) {
      await realFrames(host.ns, HOST_DEV)
      await realFrames(br, host.port)
    }
    await shapeEgress(host.ns, HOST_DEV, host.link) // the host's upload
    await shapeEgress(br, host.port, host.link) // the host's download
    await dropOnIngress(host.ns, HOST_DEV, host.link.loss ?? 0)
  }

  private async addNamespace (ns: string): Promise<void> {
    await createNamespace(ns)
    this.created.push(ns)
  }

  /** Removes every namespace (and with them the veths, qdiscs and rules) it made. */
  async destroy (): Promise<void> {
    for (const ns of this.created.splice(0).reverse()) await deleteNamespace(ns)
  }

  get namespaces (): string[] { return [...this.created] }

  async health (): Promise<LinkHealth> {
    const downloadDrops = qdiscDrops(await run('tc', ['-n', this.bridgeNs, '-s', '-j', 'qdisc', 'show']))
    const result: LinkHealth = {}
    await Promise.all(this.hosts.map(async h => {
      const [snmp, qdiscs] = await Promise.all([
        run('ip', ['netns', 'exec', h.ns, 'cat', '/proc/net/snmp']),
        run('tc', ['-n', h.ns, '-s', '-j', 'qdisc', 'show', 'dev', HOST_DEV])
      ])
      const tcp = tcpCounters(snmp)
      result[h.name] = { tcpSegmentsOut: tcp.OutSegs ?? 0, tcpRetransmitted: tcp.RetransSegs ?? 0, uploadDrops: qdiscDrops(qdiscs).get(HOST_DEV) ?? 0, downloadDrops: downloadDrops.get(h.port) ?? 0 }
    }))
    return result
  }

  async counters (): Promise<LinkCounters> {
    const out = await run('ip', ['-n', this.bridgeNs, '-s', '-j', 'link', 'show'])
    const links = JSON.parse(out) as Array<{ ifname: string; stats64?: { rx: { bytes: number }; tx: { bytes: number } } }>
    const byPort = new Map(links.map(l => [l.ifname, l.stats64]))
    const result: LinkCounters = {}
    for (const h of this.hosts) {
      const s = byPort.get(h.port)
      // Seen from the bridge: what the port receives, the host sent.
      result[h.name] = { sent: s?.rx.bytes ?? 0, received: s?.tx.bytes ?? 0 }
    }
    return result
  }
}

/** The Tcp: counters of /proc/net/snmp, by name. */
function tcpCounters (snmp: string): Record<string, number> {
  const [names, values] = snmp.split('\n').filter(l => l.startsWith('Tcp:')).map(l => l.trim().split(/\s+/).slice(1))
  const out: Record<string, number> = {}
  if (names === undefined || values === undefined) return out
  names.forEach((n, i) => { out[n] = Number(values[i]) })
  return out
}

/** Packets dropped by the leaf queues of each device in `tc -s -j qdisc show` output. */
function qdiscDrops (json: string): Map<string, number> {
  const drops = new Map<string, number>()
  for (const q of JSON.parse(json) as Array<{ kind: string; dev?: string; drops?: number }>) {
    // The byte FIFO under the HTB class is where a full link drops; the HTB root only passes them on.
    if (q.kind !== 'bfifo' && q.kind !== 'netem') continue
    const dev = q.dev ?? HOST_DEV
    drops.set(dev, (drops.get(dev) ?? 0) + (q.drops ?? 0))
  }
  return drops
}
