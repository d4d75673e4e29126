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
// the file, before any node touches a disk.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SiError } from '../errors.ts'
import { validatePlan, type Plan } from '../formats/plan.ts'

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

export function groupOf (rules: GroupRule[], node: string, macs: string[]): string | undefined {
  for (const r of rules) {
    if (r.patterns.some(p => MAC.test(p) ? macs.includes(p) : globMatch(p, node))) return r.group
  }
  return undefined
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
    const groupsText = await this.read(GROUPS_FILE)
    return groupsText === undefined ? undefined : groupOf(parseGroups(groupsText, join(this.dir, GROUPS_FILE)), node, macs)
  }
}
