// Lays overrides over an extracted image, in order (groups, then host). The target keeps
// its .si-incomplete marker from the image's extraction until the last layer is in
// place, so a failure half-way never leaves a tree that looks installed.
import type { Readable } from 'node:stream'
import { completeTarget, extractTar, type ExtractResult } from './extract.ts'
import type { Times } from '../image/times.ts'

export interface OverrideLayer {
  /** For messages and events. */
  name: string
  /** The layer's payload (tar, plain, gzip or zstd). */
  open(): Readable | AsyncIterable<Buffer>
}

export interface OverlayOptions {
  signal?: AbortSignal
  onLayer?(name: string, result: ExtractResult): void
}

/**
 * Extracts each layer over `target` (extracted with keepMarker), then completes the
 * target: marker removed, root times as the image recorded them.
 */
export async function applyOverrides (target: string, layers: OverrideLayer[], rootTimes: Times | undefined, opts: OverlayOptions = {}): Promise<void> {
  for (const layer of layers) {
    const result = await extractTar(layer.open(), target, { overlay: true, keepMarker: true, signal: opts.signal })
    opts.onLayer?.(layer.name, result)
  }
  await completeTarget(target, rootTimes)
}
