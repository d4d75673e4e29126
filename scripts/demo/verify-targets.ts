// The proof that an install worked: the node's target equals the source tree, attribute
// by attribute (the product's own compareTrees), not merely that the agent said so.
import { compareTrees, type Difference } from '../../src/image/verify.ts'

/** Trees compared at once: each hashes two full copies of the image, so CPU is the limit. */
export const VERIFY_CONCURRENCY = 2

export interface Verification {
  differences: Difference[]
  error?: string
}

export async function verifyTargets (source: string, targets: string[], signal?: AbortSignal): Promise<Verification[]> {
  const results: Verification[] = new Array(targets.length)
  let next = 0
  const worker = async (): Promise<void> => {
    for (let i = next++; i < targets.length; i = next++) {
      signal?.throwIfAborted()
      try {
        results[i] = { differences: await compareTrees(source, targets[i]) }
      } catch (err) {
        results[i] = { differences: [], error: (err as Error).message }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(VERIFY_CONCURRENCY, targets.length) }, worker))
  return results
}
