// Overrides: small trees laid over an image after extraction, SystemImager's way: the
// image first, then the overrides the plan names, then those named after the node's
// groups (groups.conf order), then the one named after the node itself, each layer
// replacing what it carries (later wins). They are versioned and distributed like images
// (a tarball and a torrent each, served under /overrides/, tracked and seeded), in their
// own collection of the repository.
import { formatImageRef, isImageName } from '../formats/image-ref.ts'
import { ImageRepository, OVERRIDES_DIR, type ImageVersion } from './repository.ts'
import { SiError, isSiError } from '../errors.ts'

export function overrideRepository (root: string): ImageRepository {
  return new ImageRepository(root, OVERRIDES_DIR)
}

export interface OverrideTarget {
  /** Overrides the plan names (NAME or NAME@VERSION), applied first: each must exist. */
  explicit?: string[]
  /** The node's groups, in the order their overrides apply. */
  groups: string[]
  /** The node's host name: its own override, applied last. */
  host?: string
}

/**
 * The overrides a node gets, in the order they apply: those the plan names, then one
 * named after each of its groups, then one named after the host. A group or host with no
 * override is skipped; an override the plan names that does not exist is an
 * ERR_IMAGE_NOT_FOUND naming it. A name met twice applies once, at its first place.
 */
export async function overrideChain (repo: ImageRepository, node: OverrideTarget): Promise<ImageVersion[]> {
  const chain: ImageVersion[] = []
  const add = (v: ImageVersion): void => { if (!chain.some(c => c.name === v.name)) chain.push(v) }
  for (const ref of node.explicit ?? []) {
    try {
      add(await repo.resolve(ref))
    } catch (err) {
      if (isSiError(err, 'ERR_IMAGE_NOT_FOUND')) throw new SiError('ERR_IMAGE_NOT_FOUND', `override "${ref}" not found (si-server override list shows those there are)`, { cause: err })
      throw err
    }
  }
  const automatic = [...node.groups, ...(node.host !== undefined ? [node.host] : [])]
  for (const name of automatic.filter(isImageName)) {
    try {
      add(await repo.resolve(name))
    } catch (err) {
      if (!isSiError(err, 'ERR_IMAGE_NOT_FOUND')) throw err
    }
  }
  return chain
}

/** NAME@VERSION of each layer: what the plan hands the agent, so every node gets the same content. */
export function chainRefs (chain: ImageVersion[]): string[] {
  return chain.map(v => formatImageRef(v.name, v.version))
}
