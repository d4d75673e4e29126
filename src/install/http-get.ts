// A bounded HTTP GET for small documents (torrents, plans): a clear error for every way
// the server can fail to answer.
import { SiError, type SiErrorCode } from '../errors.ts'

export const DEFAULT_GET_TIMEOUT_MS = 15_000
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

export async function httpGet (url: string, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Buffer> {
  const timeout = AbortSignal.timeout(opts.timeoutMs ?? DEFAULT_GET_TIMEOUT_MS)
  const signal = opts.signal === undefined ? timeout : AbortSignal.any([opts.signal, timeout])
  let res: Response
  try {
    res = await fetch(url, { signal, redirect: 'follow' })
  } catch (err) {
    if (opts.signal?.aborted === true) throw new SiError('ERR_ABORTED', `request to ${url} aborted`)
    const cause = (err as { cause?: { code?: string; message?: string } }).cause
    const why = timeout.aborted ? 'timed out' : cause?.code ?? cause?.message ?? (err as Error).message
    throw new SiError('ERR_SERVER_UNREACHABLE', `cannot reach ${url}: ${why}`, { cause: err })
  }
  const declared = Number(res.headers.get('content-length') ?? '0')
  if (declared > MAX_DOCUMENT_BYTES) throw new SiError('ERR_HTTP_STATUS', `${url} is ${declared} bytes, more than ${MAX_DOCUMENT_BYTES}`)
  const body = Buffer.from(await res.arrayBuffer())
  if (body.length > MAX_DOCUMENT_BYTES) throw new SiError('ERR_HTTP_STATUS', `${url} is larger than ${MAX_DOCUMENT_BYTES} bytes`)
  if (!res.ok) {
    // Our server explains itself in JSON ({error, code}); anyone else gets quoted briefly.
    let detail = body.toString('utf8', 0, 200).trim()
    let code: SiErrorCode = res.status === 404 ? 'ERR_IMAGE_NOT_FOUND' : 'ERR_HTTP_STATUS'
    try {
      const parsed = JSON.parse(body.toString('utf8')) as { error?: unknown; code?: unknown }
      if (typeof parsed.error === 'string') detail = parsed.error
      if (parsed.code === 'ERR_IMAGE_NOT_FOUND' || parsed.code === 'ERR_INVALID_IMAGE_NAME') code = parsed.code
    } catch { /* not JSON */ }
    throw new SiError(code, `${detail !== '' ? detail : `HTTP ${res.status}`} (${url} answered ${res.status})`)
  }
  return body
}
