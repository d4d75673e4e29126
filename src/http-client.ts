// One bounded HTTP exchange over node:http(s), for the small documents the agent and the
// tracker client fetch or post: torrents, plans, tracker replies, progress reports.
// Not fetch(): Node loads undici and compiles its WebAssembly parser on the first call,
// about 0.1 CPU-s per agent at start (profiled at N=8), paid by every node of a
// deployment at the same moment. Every way the exchange can fail is a typed error.
import http, { type IncomingHttpHeaders } from 'node:http'
import { SiError } from './errors.ts'

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])
export const MAX_REDIRECTS = 5

export interface HttpReply {
  /** the URL that answered, after redirects */
  url: string
  status: number
  statusMessage: string
  headers: IncomingHttpHeaders
  body: Buffer
}

export interface HttpRequestOptions {
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string | Buffer
  signal?: AbortSignal
  /** for the whole exchange, body included */
  timeoutMs: number
  /** a longer body (declared or received) fails with ERR_HTTP_STATUS */
  maxBytes: number
  /** GET only: redirects followed before giving up */
  maxRedirects?: number
  /** how errors name the other side (default: the URL) */
  name?: string
}

/**
 * Resolves with any status; rejects with ERR_ABORTED (the signal), ERR_SERVER_UNREACHABLE
 * (no connection, no answer in time, or the answer cut short) or ERR_HTTP_STATUS (too long,
 * or redirected too often).
 */
export async function httpRequest (url: string, opts: HttpRequestOptions): Promise<HttpReply> {
  const deadline = Date.now() + opts.timeoutMs
  let current = url
  for (let redirects = 0; ; redirects++) {
    const reply = await exchange(current, opts.name ?? current, opts, Math.max(1, deadline - Date.now()))
    const location = reply.headers.location
    if ((opts.method ?? 'GET') !== 'GET' || !REDIRECT_STATUSES.has(reply.status) || location === undefined) return reply
    if (redirects >= (opts.maxRedirects ?? MAX_REDIRECTS)) throw new SiError('ERR_HTTP_STATUS', `${opts.name ?? url} redirected more than ${opts.maxRedirects ?? MAX_REDIRECTS} times`)
    current = new URL(location, current).toString()
  }
}

function exchange (url: string, name: string, opts: HttpRequestOptions, timeoutMs: number): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted === true) {
      reject(new SiError('ERR_ABORTED', `request to ${name} aborted`))
      return
    }
    let target: URL
    try {
      target = new URL(url)
    } catch {
      reject(new SiError('ERR_INVALID_ARGUMENT', `${url} is not a URL`))
      return
    }
    // node:https is loaded only for an https URL: it brings the TLS stack, whose loading cost
    // more than the rest of an agent's start-up (127 of 283 million instructions at
    // `si-agent --version`, cachegrind), and a cluster's server speaks plain http.
    const client = target.protocol === 'https:' ? process.getBuiltinModule('node:https') : target.protocol === 'http:' ? http : undefined
    if (client === undefined) {
      reject(new SiError('ERR_INVALID_ARGUMENT', `${url}: only http and https are supported`))
      return
    }
    const headers: Record<string, string | number> = { ...opts.headers }
    if (opts.body !== undefined) headers['content-length'] = Buffer.byteLength(opts.body)
    // No keep-alive agent: an idle pooled socket would keep the process (and the server) busy.
    const req = client.request(target, { method: opts.method ?? 'GET', headers, agent: false })
    let settled = false
    const finish = (err: SiError | undefined, reply?: HttpReply): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      if (err !== undefined) {
        req.destroy()
        reject(err)
      } else {
        resolve(reply as HttpReply)
      }
    }
    const onAbort = (): void => finish(new SiError('ERR_ABORTED', `request to ${name} aborted`))
    const timer = setTimeout(() => finish(new SiError('ERR_SERVER_UNREACHABLE', `${name} did not answer within ${timeoutMs} ms`)), timeoutMs)
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    req.on('error', (err: NodeJS.ErrnoException) => finish(new SiError('ERR_SERVER_UNREACHABLE', `cannot reach ${name}: ${err.code ?? err.message}`, { cause: err })))
    req.on('response', res => {
      const declared = Number(res.headers['content-length'] ?? '0')
      if (declared > opts.maxBytes) {
        finish(new SiError('ERR_HTTP_STATUS', `${name} is ${declared} bytes, more than ${opts.maxBytes}`))
        return
      }
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > opts.maxBytes) finish(new SiError('ERR_HTTP_STATUS', `${name} is larger than ${opts.maxBytes} bytes`))
        else chunks.push(chunk)
      })
      res.on('end', () => finish(undefined, { url, status: res.statusCode ?? 0, statusMessage: res.statusMessage ?? '', headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', err => finish(new SiError('ERR_SERVER_UNREACHABLE', `answer from ${name} cut short: ${err.message}`, { cause: err })))
      res.on('aborted', () => finish(new SiError('ERR_SERVER_UNREACHABLE', `answer from ${name} cut short`)))
    })
    req.end(opts.body)
  })
}
