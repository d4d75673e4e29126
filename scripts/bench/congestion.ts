// Which TCP congestion control the emulated hosts run. It decides how TCP shares a
// shallow switch buffer among many flows (BBR v1 keeps sending through loss; cubic backs
// off), so results are comparable only at the same setting, and each result records it.
// A new namespace takes the machine's own default; it may switch to another only if
// net.ipv4.tcp_allowed_congestion_control lists it.
import { readFile } from 'node:fs/promises'
import { run } from './exec.ts'

/** Linux's default, and Debian's: what the nodes of a real cluster most likely run. */
export const PREFERRED_CONGESTION_CONTROL = 'cubic'
export const AUTO = 'auto'
const SYSCTL_DIR = '/proc/sys/net/ipv4'

export type CongestionChoice = { name: string; note?: string } | { problem: string }

async function readList (file: string): Promise<string[]> {
  return (await readFile(`${SYSCTL_DIR}/${file}`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(w => w !== '')
}

/**
 * Resolves --tcp-cc: `auto` is cubic where the namespaces may choose it, else the
 * machine's default (with a note saying so); a name is taken as asked, or refused with
 * what to change.
 */
export async function chooseCongestionControl (requested: string): Promise<CongestionChoice> {
  const [machine] = await readList('tcp_congestion_control')
  const wanted = requested === AUTO ? PREFERRED_CONGESTION_CONTROL : requested
  if (!/^[a-z0-9_]+$/.test(wanted)) return { problem: `--tcp-cc ${requested}: not a congestion control name` }
  if (wanted === machine) return { name: wanted }
  let available = await readList('tcp_available_congestion_control')
  if (!available.includes(wanted)) {
    // Loading the module makes it available; namespaces still need it allowed.
    await run('modprobe', [`tcp_${wanted}`], { allowFail: true })
    available = await readList('tcp_available_congestion_control')
  }
  const allowed = await readList('tcp_allowed_congestion_control')
  if (available.includes(wanted) && allowed.includes(wanted)) return { name: wanted }
  const why = !available.includes(wanted)
    ? `this kernel offers ${available.join(', ')}`
    : `namespaces may only choose from net.ipv4.tcp_allowed_congestion_control (${allowed.join(' ')}); sysctl -w net.ipv4.tcp_allowed_congestion_control="${[...allowed, wanted].join(' ')}" allows it`
  if (requested !== AUTO || machine === undefined) return { problem: `--tcp-cc ${requested}: ${why}` }
  return { name: machine, note: `hosts run this machine's TCP congestion control, ${machine}, not ${wanted}: ${why}` }
}
