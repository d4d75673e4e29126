// One way of writing sizes and durations across the demo's output: decimal megabytes,
// as the product's own progress lines and rate flags (8MB = 8,000,000 bytes/s) use.
export const BYTES_PER_MB = 1e6

export function formatMB (bytes: number): string {
  return `${(bytes / BYTES_PER_MB).toFixed(1)} MB`
}

export function formatSeconds (seconds: number | undefined): string {
  return seconds === undefined || !Number.isFinite(seconds) ? '-' : `${seconds.toFixed(1)} s`
}
