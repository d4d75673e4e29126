// Every failure the product reports carries a stable code, so scripts and the server's
// fleet view can act on it without parsing English.
export type SiErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_IMAGE_NOT_FOUND'
  | 'ERR_IMAGE_REMOVED'
  | 'ERR_IMAGE_IN_USE'
  | 'ERR_IMAGE_EXISTS'
  | 'ERR_INVALID_IMAGE_NAME'
  | 'ERR_SOURCE_NOT_FOUND'
  | 'ERR_SOURCE_CHANGED'
  | 'ERR_INVALID_TORRENT'
  | 'ERR_INVALID_BENCODE'
  | 'ERR_SERVER_UNREACHABLE'
  | 'ERR_HTTP_STATUS'
  | 'ERR_TRACKER_REPLY'
  | 'ERR_TRACKER_REQUEST'
  | 'ERR_PEER_PROTOCOL'
  | 'ERR_PIECE_HASH_MISMATCH'
  | 'ERR_STAGING'
  | 'ERR_NO_SPACE'
  | 'ERR_UNSAFE_ARCHIVE'
  | 'ERR_ARCHIVE'
  | 'ERR_DOWNLOAD_STALLED'
  | 'ERR_ABORTED'
  | 'ERR_TOOL_MISSING'
  | 'ERR_TOOL_FAILED'
  | 'ERR_CAPTURE'
  | 'ERR_TARGET_INCOMPLETE'
  // boot path and full install (initramfs builder, plans, disks)
  | 'ERR_INITRD'
  | 'ERR_CONFIG'
  | 'ERR_PLAN'
  | 'ERR_PLAN_NOT_FOUND'
  | 'ERR_DISK_NOT_FOUND'
  | 'ERR_DISK_TOO_SMALL'
  | 'ERR_DISK_IN_USE'
  | 'ERR_COMMAND_FAILED'
  | 'ERR_BOOTLOADER'
  | 'ERR_TOOL_BUNDLE'
  | 'ERR_POST_INSTALL'
  | 'ERR_TRANSFER_INCOMPLETE'
  | 'ERR_HELPER_FAILED'
  | 'ERR_BENCH'
  // trust: signatures, node credentials, the repository's keys
  | 'ERR_UNTRUSTED'
  | 'ERR_UNAUTHORIZED'
  | 'ERR_KEY'
  // the fleet view: reports, the history database
  | 'ERR_INVALID_REPORT'
  | 'ERR_FLEET_FULL'
  | 'ERR_RATE_LIMITED'
  | 'ERR_HISTORY'

/**
 * The key under which our tracker's failure replies carry the error code beside BEP 3's
 * human-readable "failure reason": the agent acts on the code, never on the English.
 */
export const TRACKER_ERROR_CODE_KEY = 'error code'

export class SiError extends Error {
  readonly code: SiErrorCode

  constructor (code: SiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SiError'
    this.code = code
  }
}

export function isSiError (err: unknown, code?: SiErrorCode): err is SiError {
  return err instanceof SiError && (code === undefined || err.code === code)
}

/** One line for an administrator: the code, then what went wrong. */
export function describeError (err: unknown): string {
  if (err instanceof SiError) return `${err.code}: ${err.message}`
  if (err instanceof Error) return err.message
  return String(err)
}
