// Ctrl-C and SIGTERM abort the running command through its signal, so that everything it
// started is stopped and cleaned up on the way out, instead of the process dying mid-write.
export interface Termination {
  signal: AbortSignal
  /** stops listening (the command is over) */
  dispose: () => void
}

export function onTermination (): Termination {
  const abort = new AbortController()
  const onSignal = (): void => abort.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  return {
    signal: abort.signal,
    dispose: () => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
}
