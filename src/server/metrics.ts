// Prometheus text exposition (format 0.0.4) at GET /metrics: how clusters watch
// everything else. Counters are counted here as things happen; gauges are read from the
// fleet and the server's own counters at each scrape. Rates (reports, announces) are
// PromQL's rate() over the counters.
import { FLEET_PHASES, type FleetPhase } from '../formats/node-report.ts'

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
/** Distinct error codes counted; a node cannot invent more label values than this. */
const MAX_ERROR_CODES = 200

export type ReportOutcome = 'accepted' | 'invalid' | 'unauthorized' | 'too-large' | 'rate-limited' | 'fleet-full' | 'address-full'

/** What a scrape reads from the rest of the server. */
export interface MetricsSnapshot {
  nodesByImagePhase: Map<string, Partial<Record<FleetPhase, number>>>
  fleetStoredBytes: number
  reportIntervalSeconds: number
  httpPayloadBytes: number
  seederBytesByImage: Record<string, number>
  /** boot files sent by HTTP, by name: at N nodes, N x (kernel + initramfs) */
  bootFileBytes: Record<string, number>
  /** sums over the nodes in the fleet view, as they last reported */
  nodeBytesFromServer: number
  nodeBytesFromPeers: number
  historyWriteErrors: number
}

export class ServerMetrics {
  private readonly reports = new Map<ReportOutcome, number>()
  private readonly tracker = new Map<string, number>()
  private readonly nodeErrors = new Map<string, number>()
  private readonly fleetReads = new Map<string, number>()

  countReport (outcome: ReportOutcome): void { bump(this.reports, outcome) }
  countTrackerRequest (kind: 'announce' | 'scrape'): void { bump(this.tracker, kind) }
  countFleetRead (route: string): void { bump(this.fleetReads, route) }
  countNodeError (code: string): void {
    if (this.nodeErrors.has(code) || this.nodeErrors.size < MAX_ERROR_CODES) bump(this.nodeErrors, code)
    else bump(this.nodeErrors, 'OTHER')
  }

  render (s: MetricsSnapshot): string {
    const out = new Exposition()
    out.family('si_nodes', 'gauge', 'Nodes in the fleet view, by image and phase.')
    for (const [image, phases] of [...s.nodesByImagePhase].sort(([a], [b]) => a.localeCompare(b))) {
      for (const phase of FLEET_PHASES) {
        const n = phases[phase]
        if (n !== undefined) out.sample('si_nodes', { image, phase }, n)
      }
    }
    out.family('si_http_payload_bytes_total', 'counter', 'Image bytes sent over HTTP (web seed and unicast).')
    out.sample('si_http_payload_bytes_total', {}, s.httpPayloadBytes)
    out.family('si_seeder_uploaded_bytes_total', 'counter', 'Image bytes the first seeder sent over BitTorrent, by image.')
    for (const [image, bytes] of Object.entries(s.seederBytesByImage).sort(([a], [b]) => a.localeCompare(b))) out.sample('si_seeder_uploaded_bytes_total', { image }, bytes)
    out.family('si_boot_file_bytes_total', 'counter', 'Boot files (kernel, initramfs) sent over HTTP, by file.')
    for (const [file, bytes] of Object.entries(s.bootFileBytes).sort(([a], [b]) => a.localeCompare(b))) out.sample('si_boot_file_bytes_total', { file }, bytes)
    out.family('si_node_received_bytes', 'gauge', 'Bytes the nodes in the fleet view received, by source (server or peers), as last reported.')
    out.sample('si_node_received_bytes', { source: 'server' }, s.nodeBytesFromServer)
    out.sample('si_node_received_bytes', { source: 'peers' }, s.nodeBytesFromPeers)
    out.family('si_reports_total', 'counter', 'Node reports received, by outcome.')
    for (const [outcome, n] of sorted(this.reports)) out.sample('si_reports_total', { outcome }, n)
    out.family('si_tracker_requests_total', 'counter', 'Tracker requests, by kind.')
    for (const [kind, n] of sorted(this.tracker)) out.sample('si_tracker_requests_total', { kind }, n)
    out.family('si_fleet_reads_total', 'counter', 'Reads of the fleet API, by route.')
    for (const [route, n] of sorted(this.fleetReads)) out.sample('si_fleet_reads_total', { route }, n)
    out.family('si_node_errors_total', 'counter', 'Node failures reported, by error code.')
    for (const [code, n] of sorted(this.nodeErrors)) out.sample('si_node_errors_total', { code }, n)
    out.family('si_report_interval_seconds', 'gauge', 'Interval between progress reports the server asks of each node.')
    out.sample('si_report_interval_seconds', {}, s.reportIntervalSeconds)
    out.family('si_fleet_stored_bytes', 'gauge', 'Bytes the fleet view holds (reports, timelines, logs, rate samples).')
    out.sample('si_fleet_stored_bytes', {}, s.fleetStoredBytes)
    out.family('si_history_write_errors_total', 'counter', 'Deployment history writes that failed.')
    out.sample('si_history_write_errors_total', {}, s.historyWriteErrors)
    return out.text()
  }
}

function bump<K> (map: Map<K, number>, key: K): void { map.set(key, (map.get(key) ?? 0) + 1) }

function sorted (map: Map<string, number>): Array<[string, number]> {
  return [...map].sort(([a], [b]) => a.localeCompare(b))
}

class Exposition {
  private readonly lines: string[] = []

  family (name: string, type: 'counter' | 'gauge', help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
  }

  sample (name: string, labels: Record<string, string>, value: number): void {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    this.lines.push(`${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${Number.isFinite(value) ? value : 0}`)
  }

  text (): string { return this.lines.join('\n') + '\n' }
}

/** The exposition format's escapes: backslash, double quote, line feed. */
export function escapeLabel (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}
