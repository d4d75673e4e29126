// A bounded HTTP GET for small documents (torrents, plans): a clear error for every way
// the server can fail to answer.
import { SiError, type SiErrorCode } from '../errors.ts'
import { httpRequest } from '../http-client.ts'

export const DEFAULT_GET_TIMEOUT_MS = 15_000
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

export async function httpGet (url: string, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Buffer> {
  const res = await httpRequest(url, { signal: opts.signal, timeoutMs: opts.timeoutMs ?? DEFAULT_GET_TIMEOUT_MS, maxBytes: MAX_DOCUMENT_BYTES })
  if (res.status < 200 || res.status > 299) {
    // Our server explains itself in JSON ({error, code}); anyone else gets quoted briefly.
    let detail = res.body.toString('utf8', 0, 200).trim()
    let code: SiErrorCode = res.status === 404 ? 'ERR_IMAGE_NOT_FOUND' : 'ERR_HTTP_STATUS'
    try {
      const parsed = JSON.parse(res.body.toString('utf8')) as { error?: unknown; code?: unknown }
      if (typeof parsed.error === 'string') detail = parsed.error
      if (parsed.code === 'ERR_IMAGE_NOT_FOUND' || parsed.code === 'ERR_INVALID_IMAGE_NAME') code = parsed.code
    } catch { /* not JSON */ }
    throw new SiError(code, `${detail !== '' ? detail : `HTTP ${res.status}`} (${url} answered ${res.status})`)
  }
  return res.body
}
