// The operators' console (fleet view, dashboard, metrics, history, monitor): its
// tunables, each with its reason, and the options of `si-server monitor` and
// `si-server history`.
import { option, switchOption, OptionValueError } from '../config/options.ts'
import { DEFAULT_SERVER_PORT, integer, nonEmpty, serverUrl, decimal } from '../config/values.ts'
import { REPO_OPTIONS } from './config.ts'

export interface FleetConfig {
  /**
   * Nodes the fleet view keeps. Sized for the largest fleet we plan for (the tracker is
   * sized for 20 000 nodes); past it, the node whose install ended longest ago makes room.
   */
  maxNodes: number
  /**
   * Everything the fleet view holds (reports, timelines, logs, rate samples), in bytes.
   * 10 000 posts of 60 KB once took the server from 172 to 796 MB; now a flood costs at most this.
   */
  maxBytes: number
  /**
   * Distinct node names one address may report for: a node reports one name; a rack
   * behind NAT, or a test host, a few hundred. A flood of invented names from one address
   * stops here instead of filling the view.
   */
  maxNodesPerAddress: number
  /**
   * Requests per second one address may make to the fleet API (reports and reads),
   * sustained: a node sends one every few seconds; a NAT'd rack of a hundred, or a test
   * host running many agents, a few dozen; a flood is slowed to this...
   */
  requestsPerSecondPerAddress: number
  /** ...and in a burst (a node's steps come in bursts of about twenty; so do a dashboard's first reads). */
  requestBurstPerAddress: number
  /** Addresses whose budget is tracked at once; the least recently seen are forgotten first. */
  maxTrackedAddresses: number
  /**
   * Progress reports per second the server aims at, fleet-wide: it tells each node to
   * report every (active nodes / this) seconds, within the bounds below. 100 a second
   * costs a few percent of one core (measured with 1 000 nodes, docs/ARCHITECTURE.md).
   */
  targetReportsPerSecond: number
  minReportIntervalSeconds: number
  /** SystemImager's si_monitor reported every 10 s; beyond 30 s a stuck node is noticed late. */
  maxReportIntervalSeconds: number
  /** Step changes kept per node for its timeline. */
  timelineEntries: number
  /** Rate samples kept per node for its chart (one per report). */
  nodeRateSamples: number
  /** How often the fleet-wide figures are sampled for the live charts... */
  sampleIntervalMs: number
  /** ...and how many samples are kept (1 800 at 2 s: the last hour). */
  seriesSamples: number
  /** A node silent for this many report intervals no longer counts in the live rates. */
  staleIntervals: number
  /** Most nodes in one page of GET /api/nodes. */
  maxPageSize: number
}

export const DEFAULT_FLEET_CONFIG: Readonly<FleetConfig> = Object.freeze({
  maxNodes: 20_000,
  maxBytes: 64 * 1024 * 1024,
  maxNodesPerAddress: 256,
  requestsPerSecondPerAddress: 50,
  requestBurstPerAddress: 200,
  maxTrackedAddresses: 50_000,
  targetReportsPerSecond: 100,
  minReportIntervalSeconds: 2,
  maxReportIntervalSeconds: 30,
  timelineEntries: 48,
  nodeRateSamples: 180,
  sampleIntervalMs: 2_000,
  seriesSamples: 1_800,
  staleIntervals: 3,
  maxPageSize: 5_000
})

/** The history database, in the repository. */
export const HISTORY_FILE = 'history.sqlite'

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }

/** WHEN: an ISO date or time (2026-05-01, 2026-05-01T14:00), or a time ago such as 30m, 12h, 7d. */
export function parseSince (now: () => number = Date.now): (text: string) => Date {
  return text => {
    const t = text.trim()
    const ago = /^(\d+(?:\.\d+)?)\s*([smhdw])$/i.exec(t)
    if (ago !== null) return new Date(now() - Number(ago[1]) * (DURATION_UNITS[ago[2].toLowerCase()] ?? 0) * 1000)
    const date = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(t) ? new Date(t) : undefined
    if (date === undefined || Number.isNaN(date.getTime())) throw new OptionValueError('a date (2026-05-01, 2026-05-01T14:00) or a time ago (30m, 12h, 7d)')
    return date
  }
}

export const HISTORY_OPTIONS = {
  ...REPO_OPTIONS,
  json: switchOption({ flag: 'json', help: 'one JSON object per deployment, one a line' }),
  image: option({ flag: 'image', arg: 'NAME', help: 'only deployments of this image (NAME or NAME@N)', parse: nonEmpty('an image name') }),
  since: option({ flag: 'since', arg: 'WHEN', help: 'only deployments started since WHEN: a date (2026-05-01), a time (2026-05-01T14:00) or a time ago (30m, 12h, 7d)', parse: parseSince() }),
  limit: option({ flag: 'limit', arg: 'N', help: 'at most N deployments, the newest', default: 1000, parse: integer(1, 1_000_000) })
}

export const MONITOR_OPTIONS = {
  server: option({ flag: 'server', arg: 'URL', env: 'SI_SERVER', help: 'the image server to watch', default: `http://127.0.0.1:${DEFAULT_SERVER_PORT}`, parse: serverUrl }),
  interval: option({ flag: 'interval', arg: 'SECONDS', help: 'how often the table is refreshed', default: 2, parse: decimal(0.2, 3600) }),
  once: switchOption({ flag: 'once', help: 'print the table once and exit' })
}
