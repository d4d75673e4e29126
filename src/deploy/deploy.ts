// One image into one directory, over the transport the settings name: the swarm, the
// server's web seed (http), udpcast (multicast), or the swarm with http as a fallback.
// Both `si-agent deploy` and each image of `si-agent install` come through here.
import type { Metainfo } from '../torrent/metainfo.ts'
import { DEFAULT_STREAM_STALL_SECONDS, DEFAULT_SWARM_STALL_SECONDS, effectiveSeedWait, type DownloadSettings } from './config.ts'
import type { DeployResult, EventSink } from './events.ts'
import type { ExtractOptions } from './extract.ts'
import { deployAuto } from './transport-auto.ts'
import { deployHttp } from './transport-http.ts'
import { deployMulticast } from './transport-multicast.ts'
import { deploySwarm } from './transport-swarm.ts'

export interface DeployRequest {
  metainfo: Metainfo
  target: string
  settings: DownloadSettings
  /** keepMarker when overrides follow; overlay when this payload is an override */
  extract?: Pick<ExtractOptions, 'keepMarker' | 'overlay'>
  emit: EventSink
  signal?: AbortSignal
}

export async function deployImage (req: DeployRequest): Promise<DeployResult> {
  const { metainfo, target, settings: s, extract, emit, signal } = req
  emit({ type: 'image', name: metainfo.name, infoHash: metainfo.infoHashHex, length: metainfo.length })
  const streamStall = s.stallSeconds ?? DEFAULT_STREAM_STALL_SECONDS
  const viaHttp = (): Promise<DeployResult> => deployHttp({ metainfo, target, extract, emit, signal, stallSeconds: streamStall })
  const viaSwarm = (stallSeconds: number): Promise<DeployResult> => deploySwarm({
    metainfo,
    target,
    extract,
    staging: s.staging,
    seedWait: effectiveSeedWait(s),
    seedMaxSeconds: s.seedMaxSeconds,
    pollSeconds: s.pollSeconds,
    peerPort: s.peerPort,
    peerHost: s.peerHost,
    peers: s.peers,
    maxConnections: s.maxPeers,
    stallSeconds,
    uploadBytesPerSecond: s.uploadLimit,
    emit,
    signal
  })
  switch (s.transport) {
    case 'http': return await viaHttp()
    case 'multicast': return await deployMulticast({ metainfo, target, extract, emit, signal, stallSeconds: streamStall, interface: s.mcastInterface, portbase: s.mcastPortbase })
    case 'auto': return await deployAuto(stall => viaSwarm(Math.min(stall, s.stallSeconds ?? stall)), viaHttp, emit)
    case 'bt': return await viaSwarm(s.stallSeconds ?? DEFAULT_SWARM_STALL_SECONDS)
  }
}
