// HTTP byte ranges (RFC 9110) for the web seed and the unicast fallback: one range per
// request, which is what BEP 19 clients send; anything else is served whole or refused.
export type RangeResult =
  | { kind: 'whole' }
  | { kind: 'range'; start: number; end: number }
  | { kind: 'unsatisfiable' }

const SINGLE_RANGE = /^bytes=(\d*)-(\d*)$/

export function parseRange (header: string | undefined, size: number): RangeResult {
  if (header === undefined || header === '') return { kind: 'whole' }
  const m = SINGLE_RANGE.exec(header.trim())
  // Multiple ranges or other units: serving the whole body is allowed by the RFC.
  if (m === null) return { kind: 'whole' }
  const [, first, last] = m
  if (first === '' && last === '') return { kind: 'unsatisfiable' }
  if (first === '') {
    const suffix = Number(last)
    if (suffix === 0) return { kind: 'unsatisfiable' }
    return { kind: 'range', start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(first)
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
  if (!Number.isSafeInteger(start) || start >= size || end < start) return { kind: 'unsatisfiable' }
  return { kind: 'range', start, end }
}
