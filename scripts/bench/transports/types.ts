// What a transport is to the harness: an optional server side started in the server's
// namespace, and one client command per node.
import type { Cluster, Host } from '../cluster.ts'
import type { BenchImage } from '../image.ts'

export interface TrialContext {
  cluster: Cluster
  image: BenchImage
  /** snapshot of dist/ taken at the start, so a concurrent rebuild cannot break a run */
  agentBin: string
  serverBin: string
  /** scratch directory of this trial: per-node targets and staging */
  workDir: string
  /** base URL of the image server inside the cluster */
  serverUrl: string
}

export interface ServerSide { stop(): Promise<void> }

export interface Transport {
  /** short id used in results and plots */
  id: string
  /** what the report calls it */
  label: string
  /** whether si-server must run (tracker, seeder, torrents, web seed) */
  needsImageServer: boolean
  /** whether the client prints si-agent JSON events */
  agentEvents: boolean
  /**
   * A client that keeps running once done (a seeding aria2c) prints this line when its
   * image is verified; the harness stops it once every node has printed it.
   */
  verifiedMarker?: string
  /** why it cannot run here (a tool missing), or undefined */
  unavailable(): Promise<string | undefined>
  startServerSide?(ctx: TrialContext): Promise<ServerSide>
  /** the command run inside the node's namespace */
  nodeCommand(ctx: TrialContext, node: Host, target: string): string[]
}
