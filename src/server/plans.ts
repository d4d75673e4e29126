// Which plan a node gets, from files an administrator keeps in the plan directory:
//
//   hosts/NODE.json             one node, by the name it reports
//   macs/aa-bb-cc-dd-ee-ff.json one node, by any of its MAC addresses
//   groups.conf + groups/G.json nodes by group: "G pattern..." lines, a pattern being
//                               a host name with * and ? wildcards, or a MAC address
//   default.json                everyone else
//
// Looked up in that order, read at each request (edits need no restart), and validated
// as the agent will validate them, so a broken file is an error on the server, naming
// the file, before any node touches a disk. The plan a node gets lists its overrides as
// it applies them, each pinned to a version (withOverrides).
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError, isSiError } from '../errors.ts'
import { validatePlan, type Plan } from '../formats/plan.ts'
import type { ImageRepository } from '../image/repository.ts'
import { chainRefs, overrideChain } from '../image/overrides.ts'

export const GROUPS_FILE = 'groups.conf'
export const DEFAULT_PLAN = 'default.json'
export const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/
const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
export const GROUP_NAME_RULE = '1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit'

export function isGroupName (text: string): boolean { return GROUP_NAME.test(text) }
const MAX_PLAN_BYTES = 1024 * 1024

export interface SelectedPlan { plan: Plan; source: string }

export interface GroupRule { group: string; patterns: string[] }

export function parseGroups (text: string, origin: string): GroupRule[] {
  const rules: GroupRule[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim()
    if (line === '') return
    const [group, ...patterns] = line.split(/\s+/)
    if (!GROUP_NAME.test(group) || patterns.length === 0) throw new SiError('ERR_PLAN', `${origin}:${i + 1}: expected "GROUP PATTERN..." (a group name, then host name patterns or MAC addresses)`)
    rules.push({ group, patterns: patterns.map(p => p.toLowerCase()) })
  })
  return rules
}

/** Shell-style * and ? over a whole host name (case-insensitive, as DNS names are). */
export function globMatch (pattern: string, name: string): boolean {
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$', 'i')
  return re.test(name)
}

function matches (rule: GroupRule, node: string, macs: string[]): boolean {
  return rule.patterns.some(p => MAC.test(p) ? macs.includes(p) : globMatch(p, node))
}

/** The node's group: the first that matches (its plan, its group token). */
export function groupOf (rules: GroupRule[], node: string, macs: string[]): string | undefined {
  return rules.find(r => matches(r, node, macs))?.group
}

/** Every group the node is in, in groups.conf order, each once (their overrides apply in that order). */
export function groupsOf (rules: GroupRule[], node: string, macs: string[]): string[] {
  return [...new Set(rules.filter(r => matches(r, node, macs)).map(r => r.group))]
}

export class PlanStore {
  constructor (readonly dir: string) {}

  /** The plan file's text, or undefined when there is no such file. */
  private async read (rel: string): Promise<string | undefined> {
    try {
      const data = await readFile(join(this.dir, rel))
      if (data.length > MAX_PLAN_BYTES) throw new SiError('ERR_PLAN', `${rel} is larger than ${MAX_PLAN_BYTES} bytes`)
      return data.toString('utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  private async load (rel: string): Promise<SelectedPlan | undefined> {
    const text = await this.read(rel)
    if (text === undefined) return undefined
    let json: unknown
    try { json = JSON.parse(text) } catch (err) {
      throw new SiError('ERR_PLAN', `plan ${join(this.dir, rel)}: invalid JSON: ${(err as Error).message}`)
    }
    return { plan: validatePlan(json, `plan ${join(this.dir, rel)}`), source: rel }
  }

  async select (node: string, macs: string[]): Promise<SelectedPlan | undefined> {
    const byHost = await this.load(join('hosts', `${node}.json`))
    if (byHost !== undefined) return byHost
    for (const mac of macs) {
      const byMac = await this.load(join('macs', `${mac.replace(/:/g, '-')}.json`))
      if (byMac !== undefined) return byMac
    }
    const group = await this.groupOf(node, macs)
    if (group !== undefined) {
      const byGroup = await this.load(join('groups', `${group}.json`))
      if (byGroup === undefined) throw new SiError('ERR_PLAN', `node ${node} is in group ${group} (${GROUPS_FILE}) but ${join(this.dir, 'groups', `${group}.json`)} does not exist`)
      return byGroup
    }
    return await this.load(DEFAULT_PLAN)
  }

  /** The node's group by groups.conf, if any (its group token speaks for it). */
  async groupOf (node: string, macs: string[]): Promise<string | undefined> {
    return groupOf(await this.groupRules(), node, macs)
  }

  /** Every group of the node by groups.conf, in its order. */
  async groupsOf (node: string, macs: string[]): Promise<string[]> {
    return groupsOf(await this.groupRules(), node, macs)
  }

  private async groupRules (): Promise<GroupRule[]> {
    const groupsText = await this.read(GROUPS_FILE)
    return groupsText === undefined ? [] : parseGroups(groupsText, join(this.dir, GROUPS_FILE))
  }
}

/**
 * The plan with its overrides as the node applies them, each pinned to a version: those
 * the plan names, then those named after the node's groups, then the node's own
 * (image/overrides.ts). An override the plan names that does not exist is an ERR_PLAN
 * naming it and the plan's file, before any node touches a disk.
 */
export async function withOverrides (store: PlanStore, overrides: ImageRepository, selected: SelectedPlan, node: string, macs: string[]): Promise<Plan> {
  try {
    const chain = await overrideChain(overrides, { explicit: selected.plan.overrides, groups: await store.groupsOf(node, macs), host: node })
    return { ...selected.plan, overrides: chainRefs(chain) }
  } catch (err) {
    if (isSiError(err, 'ERR_IMAGE_NOT_FOUND')) throw new SiError('ERR_PLAN', `plan ${join(store.dir, selected.source)}: ${(err as Error).message}`, { cause: err })
    throw err
  }
}
