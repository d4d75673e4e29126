// What every node last told the server about its install: the fleet view's data.
export const MAX_NODES = 100_000
export const MAX_EVENT_BYTES = 64 * 1024

export interface NodeReport {
  node: string
  phase: string
  image?: string
  progress?: number
  downloadRate?: number
  uploadRate?: number
  peers?: number
  error?: string
  receivedAt: string
  /** the event as the node sent it */
  event: Record<string, unknown>
}

export class Fleet {
  private readonly nodes = new Map<string, NodeReport>()

  record (node: string, event: Record<string, unknown>): NodeReport | undefined {
    if (!this.nodes.has(node) && this.nodes.size >= MAX_NODES) return undefined
    const report: NodeReport = {
      node,
      phase: typeof event.phase === 'string' ? event.phase : (typeof event.type === 'string' ? event.type : 'unknown'),
      image: typeof event.image === 'string' ? event.image : undefined,
      progress: typeof event.progress === 'number' ? event.progress : undefined,
      downloadRate: typeof event.downloadRate === 'number' ? event.downloadRate : undefined,
      uploadRate: typeof event.uploadRate === 'number' ? event.uploadRate : undefined,
      peers: typeof event.peers === 'number' ? event.peers : undefined,
      error: typeof event.error === 'string' ? event.error : undefined,
      receivedAt: new Date().toISOString(),
      event
    }
    this.nodes.set(node, report)
    return report
  }

  list (): NodeReport[] {
    return [...this.nodes.values()].sort((a, b) => a.node.localeCompare(b.node))
  }
}
