// The process's peak resident memory, as the kernel counts it (getrusage's maxrss): every
// page ever resident at once, not a sample that may miss a short peak between two.
const KIB = 1024

export function peakRssBytes (): number {
  return process.resourceUsage().maxRSS * KIB
}
