// The emulated LAN: a network namespace of our own holding a bridge (the server's
// address), one tap device per VM, and busybox udhcpd handing out addresses. Private
// addresses exist only inside this namespace; it is deleted at the end.
import { spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { must, start, stop, type Running } from './proc.ts'

export const SUBNET_PREFIX = '10.213.0'
export const SERVER_IP = `${SUBNET_PREFIX}.1`
const BRIDGE = 'sibr0'
const DHCP_FIRST = 100
const DHCP_LAST = 199

export interface Lan {
  ns: string
  taps: string[]
  dhcp: Running
  /** argv prefix that runs a command inside the namespace */
  exec: string[]
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
    'option lease 3600',
    ''
  ].join('\n')
}

export async function createLan (workdir: string, vms: number): Promise<Lan> {
  const ns = `si-e2e-${process.pid}`
  must(['ip', 'netns', 'add', ns])
  const exec = ['ip', 'netns', 'exec', ns]
  try {
    must([...exec, 'ip', 'link', 'set', 'lo', 'up'])
    must([...exec, 'ip', 'link', 'add', BRIDGE, 'type', 'bridge'])
    must([...exec, 'ip', 'addr', 'add', `${SERVER_IP}/24`, 'dev', BRIDGE])
    must([...exec, 'ip', 'link', 'set', BRIDGE, 'up'])
    const taps: string[] = []
    for (let i = 0; i < vms; i++) {
      const tap = `sitap${i}`
      must([...exec, 'ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap'])
      must([...exec, 'ip', 'link', 'set', tap, 'master', BRIDGE])
      must([...exec, 'ip', 'link', 'set', tap, 'up'])
      taps.push(tap)
    }
    const leases = join(workdir, 'udhcpd.leases')
    await writeFile(leases, '')
    const conf = join(workdir, 'udhcpd.conf')
    await writeFile(conf, udhcpdConfig(leases))
    const dhcp = start('udhcpd', [...exec, 'busybox', 'udhcpd', '-f', conf], join(workdir, 'udhcpd.log'))
    return { ns, taps, dhcp, exec }
  } catch (err) {
    for (let i = 0; i < vms; i++) spawnSync('ip', [...exec.slice(1), 'ip', 'link', 'delete', `sitap${i}`], { stdio: 'ignore' })
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
