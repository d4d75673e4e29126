// A bounded HTTP GET for small documents (torrents, plans): a clear error for every way
// the server can fail to answer.
import type { IncomingHttpHeaders } from 'node:http'
import { SiError, isSiError, type SiErrorCode } from '../errors.ts'
import { httpRequest } from '../http-client.ts'
import { abortableSleep } from './abortable-sleep.ts'

export const DEFAULT_GET_TIMEOUT_MS = 15_000
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
/** How often an unreachable server is tried, and how long apart (see httpGetRetrying). */
export const GET_ATTEMPTS = 5
export const GET_RETRY_MS = 3_000

/** A document and the headers it came with (a signature may be among them). */
export interface Document { body: Buffer; headers: IncomingHttpHeaders }

/** Codes our server names in its error answers that the agent acts on. */
const PASSED_ON_CODES: SiErrorCode[] = ['ERR_IMAGE_NOT_FOUND', 'ERR_INVALID_IMAGE_NAME', 'ERR_IMAGE_REMOVED', 'ERR_UNAUTHORIZED']

export async function httpGet (url: string, opts: { signal?: AbortSignal; timeoutMs?: number; headers?: Record<string, string> } = {}): Promise<Document> {
  const res = await httpRequest(url, { signal: opts.signal, timeoutMs: opts.timeoutMs ?? DEFAULT_GET_TIMEOUT_MS, maxBytes: MAX_DOCUMENT_BYTES, headers: opts.headers })
  if (res.status < 200 || res.status > 299) {
    // Our server explains itself in JSON ({error, code}); anyone else gets quoted briefly.
    let detail = res.body.toString('utf8', 0, 200).trim()
    let code: SiErrorCode = res.status === 404 ? 'ERR_IMAGE_NOT_FOUND' : res.status === 410 ? 'ERR_IMAGE_REMOVED' : res.status === 401 || res.status === 403 ? 'ERR_UNAUTHORIZED' : 'ERR_HTTP_STATUS'
    try {
      const parsed = JSON.parse(res.body.toString('utf8')) as { error?: unknown; code?: unknown }
      if (typeof parsed.error === 'string') detail = parsed.error
      const named = PASSED_ON_CODES.find(c => c === parsed.code)
      if (named !== undefined) code = named
    } catch { /* not JSON */ }
    throw new SiError(code, `${detail !== '' ? detail : `HTTP ${res.status}`} (${url} answered ${res.status})`)
  }
  return { body: res.body, headers: res.headers }
}

export interface RetryOptions {
  signal?: AbortSignal
  /** request headers (a node's proof) */
  headers?: Record<string, string>
  attempts?: number
  retryMs?: number
  /** what to check, added to the final error */
  hint?: string
}

/**
 * httpGet, tried again while the server is unreachable: it may still be starting when a
 * rack powers on, or its link may be full of image traffic, where a new connection's
 * handshake can be lost more than once (a node of a 32-node HTTP benchmark gave up on its
 * torrent after 15 s). Any other answer, an error status included, is final.
 */
export async function httpGetRetrying (url: string, opts: RetryOptions = {}): Promise<Document> {
  const attempts = opts.attempts ?? GET_ATTEMPTS
  for (let attempt = 1; ; attempt++) {
    try {
      return await httpGet(url, { signal: opts.signal, headers: opts.headers })
    } catch (err) {
      if (!isSiError(err, 'ERR_SERVER_UNREACHABLE')) throw err
      if (attempt >= attempts) {
        throw new SiError('ERR_SERVER_UNREACHABLE', `${err.message} (${attempts} attempts${opts.hint !== undefined ? `; ${opts.hint}` : ''})`, { cause: err })
      }
      await abortableSleep(opts.retryMs ?? GET_RETRY_MS, opts.signal, `request to ${url}`)
    }
  }
}
