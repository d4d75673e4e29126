// Link shaping with tc, one direction per call: an HTB class at the link rate on the
// interface's egress. Loss is dropped on ingress with nftables (this kernel has no
// sch_netem and no tc actions), where it acts as real loss would: the sender learns of it
// only by its absence. Delay needs sch_netem and is refused without it.
import { SiError } from '../../src/errors.ts'
import { run } from './exec.ts'

/**
 * Queue at each shaped egress, as time at the link rate: a generous switch buffer. A
 * fixed packet count would mean seconds of queueing at low rates, which no LAN has.
 */
export const QUEUE_SECONDS = 0.2
const MIN_QUEUE_BYTES = 64 * 1024
/** netem's own queue, in packets (it only delays; the bfifo-equivalent limit is the HTB's). */
const NETEM_LIMIT_PACKETS = 1000
/** HTB quantum of one full frame keeps the class fair and silences the r2q warning. */
const HTB_QUANTUM_BYTES = 1514
const MTU_BYTES = 1500

export interface LinkSpec {
  /** link rate in Mbit/s, each direction */
  rateMbit: number
  /** one-way delay added on egress (needs sch_netem) */
  delayMs?: number
  /** fraction of packets dropped on arrival, 0..1 */
  loss?: number
}

export async function shapeEgress (ns: string, dev: string, link: LinkSpec): Promise<void> {
  const rate = `${link.rateMbit}mbit`
  await run('tc', ['-n', ns, 'qdisc', 'replace', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '1'])
  await run('tc', ['-n', ns, 'class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', rate, 'ceil', rate, 'quantum', String(HTB_QUANTUM_BYTES)])
  if ((link.delayMs ?? 0) > 0) {
    try {
      await run('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'parent', '1:1', 'handle', '10:', 'netem', 'delay', `${link.delayMs}ms`, 'limit', String(NETEM_LIMIT_PACKETS)])
    } catch (err) {
      throw new SiError('ERR_BENCH', `link delay needs sch_netem, which this kernel lacks: ${(err as Error).message}`, { cause: err })
    }
  } else {
    const limit = Math.max(MIN_QUEUE_BYTES, Math.round(link.rateMbit * 1e6 / 8 * QUEUE_SECONDS))
    await run('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'parent', '1:1', 'handle', '10:', 'bfifo', 'limit', String(limit)])
  }
}

/** Drops the given fraction of the packets arriving on dev, independently of each other. */
export async function dropOnIngress (ns: string, dev: string, loss: number): Promise<void> {
  if (loss <= 0) return
  await realFrames(ns, dev)
  const perMillion = String(Math.round(loss * 1_000_000))
  const nft = (...words: string[]): Promise<string> => run('ip', ['netns', 'exec', ns, 'nft', ...words])
  await nft('add', 'table', 'netdev', 'sibench_loss')
  await nft('add', 'chain', 'netdev', 'sibench_loss', 'ingress', `{ type filter hook ingress device ${dev} priority 0; policy accept; }`)
  await nft('add', 'rule', 'netdev', 'sibench_loss', 'ingress', 'numgen', 'random', 'mod', '1000000', 'lt', perMillion, 'drop')
}

/**
 * Turns segmentation offload off: a veth passes 64 KiB super-packets, and dropping one
 * of those would be a burst of 44 losses instead of one.
 */
export async function realFrames (ns: string, dev: string): Promise<void> {
  await run('ip', ['-n', ns, 'link', 'set', 'dev', dev, 'gso_max_size', String(MTU_BYTES), 'gso_max_segs', '1'])
}
