// The subset of bittorrent-protocol (and ut_pex) that the swarm layer uses.
declare module 'bittorrent-protocol' {
  import type { Duplex } from 'node:stream'

  interface BitField {
    get (index: number): boolean
    buffer: Uint8Array
  }

  interface WireRequest { piece: number; offset: number; length: number }

  class Wire {
    constructor (type?: string, peEnabled?: number)
    peerId: string | null
    amChoking: boolean
    amInterested: boolean
    peerChoking: boolean
    peerInterested: boolean
    peerPieces: BitField
    requests: WireRequest[]
    peerRequests: WireRequest[]
    extendedHandshake: Record<string, unknown>
    peerExtendedHandshake: Record<string, unknown>
    destroyed: boolean
    ut_pex?: UtPex
    _readableState?: { buffered?: number }
    handshake (infoHash: Uint8Array | string, peerId: Uint8Array | string, extensions?: { dht?: boolean; fast?: boolean }): void
    bitfield (bitfield: Uint8Array): void
    have (index: number): void
    haveAll (): void
    choke (): void
    unchoke (): void
    interested (): void
    uninterested (): void
    request (index: number, offset: number, length: number, cb: (err: Error | null, block?: Uint8Array) => void): void
    piece (index: number, offset: number, buffer: Uint8Array): void
    cancel (index: number, offset: number, length: number): void
    setTimeout (ms: number, unref?: boolean): void
    setKeepAlive (enable: boolean): void
    use (extension: unknown): void
    destroy (): void
    end (): void
    pipe<T extends NodeJS.WritableStream> (dest: T): T
    on (event: string, listener: (...args: any[]) => void): this
    once (event: string, listener: (...args: any[]) => void): this
    removeAllListeners (event?: string): this
  }

  interface UtPex {
    start (): void
    stop (): void
    reset (): void
    addPeer (peer: string): void
    dropPeer (peer: string): void
    on (event: 'peer', listener: (peer: string) => void): this
    on (event: 'dropped', listener: (peer: string) => void): this
    on (event: 'warning', listener: (err: Error) => void): this
  }

  export default Wire
  export type { Wire, BitField, UtPex, Duplex }
}

declare module 'ut_pex' {
  function utPex (): unknown
  export default utPex
}
