// Overrides: small trees laid over an image after extraction, SystemImager's way: the
// image first, then the node's groups in order, then the node itself, each layer
// replacing what it carries. They are versioned and distributed like images (a tarball
// and a torrent each), in their own collection of the repository.
import { parseImageRef } from '../formats/image-ref.ts'
import { ImageRepository, OVERRIDES_DIR, type ImageVersion } from './repository.ts'
import { isSiError } from '../errors.ts'

export function overrideRepository (root: string): ImageRepository {
  return new ImageRepository(root, OVERRIDES_DIR)
}

export interface OverrideTarget {
  /** The node's groups, in the order their overrides apply. */
  groups: string[]
  /** The node's host name: its own override, applied last. */
  host?: string
}

/**
 * The overrides a node gets, in the order they apply: an override named after each of
 * its groups, then one named after the host. Names with no override are skipped.
 */
export async function overrideChain (repo: ImageRepository, node: OverrideTarget): Promise<ImageVersion[]> {
  const names = [...node.groups, ...(node.host !== undefined ? [node.host] : [])]
  const chain: ImageVersion[] = []
  for (const name of names) {
    try {
      parseImageRef(name)
      chain.push(await repo.resolve(name))
    } catch (err) {
      if (!isSiError(err, 'ERR_IMAGE_NOT_FOUND') && !isSiError(err, 'ERR_INVALID_IMAGE_NAME')) throw err
    }
  }
  return chain
}
