// Waiting between retries and polls during an install, cut short by the install's abort.
import { SiError } from '../errors.ts'

/** Resolves after `ms`; rejects with ERR_ABORTED (naming `what`) as soon as the signal aborts, or at once if it already has. */
export function abortableSleep (ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = (): SiError => new SiError('ERR_ABORTED', `${what} aborted`)
    if (signal?.aborted === true) { reject(aborted()); return }
    const onAbort = (): void => { clearTimeout(timer); reject(aborted()) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
