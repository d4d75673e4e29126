// Minimal SVG line charts, written by hand: axes with round ticks, one polyline per
// series, a legend. Enough for the report's figures, no dependency.

export interface Series { name: string; points: Array<[number, number]>; color?: string; dashed?: boolean }

export interface ChartOptions {
  title: string
  xLabel: string
  yLabel: string
  width?: number
  height?: number
  logX?: boolean
  yMax?: number
  /** draw markers at each point */
  markers?: boolean
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf']
const MARGIN = { left: 64, right: 240, top: 36, bottom: 48 }
const TICKS = 5

export function colorAt (i: number): string { return PALETTE[i % PALETTE.length] }

function niceStep (range: number): number {
  const raw = range / TICKS
  const mag = 10 ** Math.floor(Math.log10(raw))
  const norm = raw / mag
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag
}

function esc (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function fmt (v: number): string {
  return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toPrecision(2)
}

export function lineChart (series: Series[], opts: ChartOptions): string {
  const width = opts.width ?? 780
  const height = opts.height ?? 400
  const plotW = width - MARGIN.left - MARGIN.right
  const plotH = height - MARGIN.top - MARGIN.bottom
  const all = series.flatMap(s => s.points).filter(p => Number.isFinite(p[0]) && Number.isFinite(p[1]))
  const xs = all.map(p => p[0])
  const xMin = opts.logX === true ? Math.min(...xs) : Math.min(0, ...xs)
  const xMax = Math.max(...xs, xMin + 1)
  const yMax = opts.yMax ?? Math.max(...all.map(p => p[1]), 1e-9) * 1.05
  const fx = (x: number): number => opts.logX === true
    ? MARGIN.left + (Math.log(x / xMin) / Math.log(xMax / xMin || 2)) * plotW
    : MARGIN.left + ((x - xMin) / (xMax - xMin)) * plotW
  const fy = (y: number): number => MARGIN.top + plotH - (Math.min(y, yMax) / yMax) * plotH
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`)
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`)
  out.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${esc(opts.title)}</text>`)
  // Axes and ticks.
  out.push(`<line x1="${MARGIN.left}" y1="${MARGIN.top + plotH}" x2="${MARGIN.left + plotW}" y2="${MARGIN.top + plotH}" stroke="black"/>`)
  out.push(`<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${MARGIN.top + plotH}" stroke="black"/>`)
  const yStep = niceStep(yMax)
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    out.push(`<line x1="${MARGIN.left}" y1="${fy(y)}" x2="${MARGIN.left + plotW}" y2="${fy(y)}" stroke="#ddd"/>`)
    out.push(`<text x="${MARGIN.left - 6}" y="${fy(y) + 4}" text-anchor="end">${fmt(y)}</text>`)
  }
  const xTicks = opts.logX === true
    ? [...new Set(xs)].sort((a, b) => a - b)
    : Array.from({ length: Math.floor((xMax - xMin) / niceStep(xMax - xMin)) + 1 }, (_, i) => xMin + i * niceStep(xMax - xMin))
  for (const x of xTicks) out.push(`<text x="${fx(x)}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${fmt(x)}</text>`)
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${height - 10}" text-anchor="middle">${esc(opts.xLabel)}</text>`)
  out.push(`<text transform="translate(14 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`)
  // Series and legend.
  series.forEach((s, i) => {
    const color = s.color ?? colorAt(i)
    const pts = s.points.filter(p => Number.isFinite(p[0]) && Number.isFinite(p[1]))
    if (pts.length === 0) return
    const d = pts.map(p => `${fx(p[0]).toFixed(1)},${fy(p[1]).toFixed(1)}`).join(' ')
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5"${s.dashed === true ? ' stroke-dasharray="5,4"' : ''} points="${d}"/>`)
    if (opts.markers === true) for (const p of pts) out.push(`<circle cx="${fx(p[0]).toFixed(1)}" cy="${fy(p[1]).toFixed(1)}" r="3" fill="${color}"/>`)
    if (series.length <= 12) {
      const ly = MARGIN.top + 8 + i * 18
      out.push(`<line x1="${width - MARGIN.right + 10}" y1="${ly}" x2="${width - MARGIN.right + 34}" y2="${ly}" stroke="${color}" stroke-width="2"${s.dashed === true ? ' stroke-dasharray="5,4"' : ''}/>`)
      out.push(`<text x="${width - MARGIN.right + 40}" y="${ly + 4}">${esc(s.name)}</text>`)
    }
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}
