// The tool bundle: what an install needs beyond reaching the network and running the
// agent (disk and file-system tools, storage and file-system modules), kept out of the
// initramfs and fetched through the swarm as an image of its own, one per kernel
// version. The initramfs builder (initrd/build.ts) makes both and writes these files;
// the agent (src/install/tool-bundle.ts) reads them.

/** Image names of tool bundles: this prefix and the kernel version. */
export const TOOL_BUNDLE_PREFIX = 'si-tools-'
/** In the initramfs: the name of the bundle built with it (absent: no bundle needed). */
export const TOOL_BUNDLE_NAME_FILE = '/etc/si/tool-bundle'
/** In the bundle: modules to load once it is in place, besides what devices ask for. */
export const TOOL_BUNDLE_MODULES_FILE = '/etc/si/modules.tools'
/** In the initramfs: loads the modules listed in its arguments' files, then every present device's driver. */
export const COLDPLUG_COMMAND = '/sbin/si-coldplug'

const NOT_IN_IMAGE_NAME = /[^A-Za-z0-9._-]/g
const MAX_IMAGE_NAME = 64

/** The bundle's image name for a kernel version (characters an image name cannot hold become "_"). */
export function toolBundleName (kernelVersion: string): string {
  return `${TOOL_BUNDLE_PREFIX}${kernelVersion.replace(NOT_IN_IMAGE_NAME, '_')}`.slice(0, MAX_IMAGE_NAME)
}
