// The emulated LAN: a network namespace of our own holding a bridge (the server's
// address), one tap device per VM, and a DHCP server: busybox udhcpd for VMs booted
// with -kernel, or, for VMs that boot from their firmware's PXE ROM, Debian's dnsmasq
// as DHCP and TFTP server the way examples/dnsmasq/swarmimager.conf sets one up: iPXE
// (DHCP option 175) gets a TFTP script that chains to si-server's boot.ipxe over HTTP.
// Private addresses exist only inside this namespace; it is deleted at the end.
import { spawnSync } from 'node:child_process'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describeError } from '../../src/errors.ts'
import { must, start, stop, stopAll, type Running } from './proc.ts'

export const SUBNET_PREFIX = '10.213.0'
export const SERVER_IP = `${SUBNET_PREFIX}.1`
/** Names carry this engineer's prefix: namespaces and links are shared with other runs. */
const NAME_PREFIX = 'sb'
const BRIDGE = `${NAME_PREFIX}br0`
const DHCP_FIRST = 100
const DHCP_LAST = 199
const LEASE_SECONDS = 3600
/** What the TFTP server hands iPXE: a script that chains to the HTTP one. */
export const CHAIN_SCRIPT = 'swarmimager.ipxe'

export interface Lan {
  ns: string
  taps: string[]
  dhcp: Running
  /** argv prefix that runs a command inside the namespace */
  exec: string[]
}

/** PXE service for firmware boots: where iPXE is sent, and host names by MAC. */
export interface PxeService {
  chainUrl: string
  hosts: Array<{ mac: string; name: string }>
}

export function vmMac (index: number): string {
  return `52:54:00:5e:00:${(index + 1).toString(16).padStart(2, '0')}`
}

export function udhcpdConfig (leaseFile: string): string {
  return [
    `start ${SUBNET_PREFIX}.${DHCP_FIRST}`,
    `end ${SUBNET_PREFIX}.${DHCP_LAST}`,
    `interface ${BRIDGE}`,
    `lease_file ${leaseFile}`,
    'max_leases 100',
    'option subnet 255.255.255.0',
    `option lease ${LEASE_SECONDS}`,
    ''
  ].join('\n')
}

/** dnsmasq's configuration: DHCP, TFTP, and iPXE sent on to the chain script; no DNS. */
export function dnsmasqConfig (workdir: string, pxe: PxeService): string {
  return [
    'port=0',
    'user=root',
    `interface=${BRIDGE}`,
    'bind-interfaces',
    `dhcp-range=${SUBNET_PREFIX}.${DHCP_FIRST},${SUBNET_PREFIX}.${DHCP_LAST},255.255.255.0,${LEASE_SECONDS}`,
    `dhcp-leasefile=${join(workdir, 'dnsmasq.leases')}`,
    'log-dhcp',
    'enable-tftp',
    `tftp-root=${join(workdir, 'tftp')}`,
    'dhcp-match=set:ipxe,175',
    `dhcp-boot=tag:ipxe,${CHAIN_SCRIPT}`,
    ...pxe.hosts.map(h => `dhcp-host=${h.mac},${h.name}`),
    ''
  ].join('\n')
}

async function startDhcp (workdir: string, exec: string[], pxe: PxeService | undefined): Promise<Running> {
  if (pxe === undefined) {
    const leases = join(workdir, 'udhcpd.leases')
    await writeFile(leases, '')
    const conf = join(workdir, 'udhcpd.conf')
    await writeFile(conf, udhcpdConfig(leases))
    return start('udhcpd', [...exec, 'busybox', 'udhcpd', '-f', conf], join(workdir, 'udhcpd.log'))
  }
  await mkdir(join(workdir, 'tftp'), { recursive: true })
  await writeFile(join(workdir, 'tftp', CHAIN_SCRIPT), `#!ipxe\nchain ${pxe.chainUrl}\n`)
  const conf = join(workdir, 'dnsmasq.conf')
  await writeFile(conf, dnsmasqConfig(workdir, pxe))
  return start('dnsmasq', [...exec, 'dnsmasq', '--keep-in-foreground', '--log-facility=-', `--conf-file=${conf}`, `--pid-file=${join(workdir, 'dnsmasq.pid')}`], join(workdir, 'dnsmasq.log'))
}

export async function createLan (workdir: string, vms: number, pxe?: PxeService): Promise<Lan> {
  const ns = `${NAME_PREFIX}-e2e-${process.pid}`
  must(['ip', 'netns', 'add', ns])
  const exec = ['ip', 'netns', 'exec', ns]
  try {
    must([...exec, 'ip', 'link', 'set', 'lo', 'up'])
    must([...exec, 'ip', 'link', 'add', BRIDGE, 'type', 'bridge'])
    must([...exec, 'ip', 'addr', 'add', `${SERVER_IP}/24`, 'dev', BRIDGE])
    must([...exec, 'ip', 'link', 'set', BRIDGE, 'up'])
    const taps: string[] = []
    for (let i = 0; i < vms; i++) {
      const tap = `${NAME_PREFIX}tap${i}`
      must([...exec, 'ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap'])
      must([...exec, 'ip', 'link', 'set', tap, 'master', BRIDGE])
      must([...exec, 'ip', 'link', 'set', tap, 'up'])
      taps.push(tap)
    }
    const dhcp = await startDhcp(workdir, exec, pxe)
    return { ns, taps, dhcp, exec }
  } catch (err) {
    for (let i = 0; i < vms; i++) spawnSync('ip', [...exec.slice(1), 'ip', 'link', 'delete', `${NAME_PREFIX}tap${i}`], { stdio: 'ignore' })
    must(['ip', 'netns', 'delete', ns])
    throw err
  }
}

export async function destroyLan (lan: Lan): Promise<void> {
  await stop(lan.dhcp)
  // Taps first: a tun device can outlive its namespace by moving to the host's.
  for (const tap of lan.taps) must([...lan.exec, 'ip', 'link', 'delete', tap])
  must(['ip', 'netns', 'delete', lan.ns])
}

/** The end of a run: every child stopped, the LAN gone, the work directory removed unless kept. */
export async function endRun (run: { lan?: Lan; workdir: string; keep: boolean; log: (msg: string) => void }): Promise<void> {
  await stopAll()
  if (run.lan !== undefined) await destroyLan(run.lan).catch(err => run.log(`cleanup: ${describeError(err)}`))
  if (run.keep) run.log(`kept ${run.workdir}`)
  else await rm(run.workdir, { recursive: true, force: true })
}
