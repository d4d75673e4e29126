// The fleet dashboard: polls the server's fleet API (changed nodes only, by update
// counter), keeps the fleet in memory, and redraws the table and the charts. No
// framework, nothing fetched from elsewhere; every text a node sent is escaped.
'use strict'

const POLL_MS = 2000
/** A full reload now and then drops the nodes the server no longer keeps. */
const FULL_RELOAD_MS = 30000
const PAGE = 5000
/** Points kept per node for the per-node chart (one per report). */
const NODE_POINTS = 300
/**
 * Rows drawn at first, and added by each "more": laying out a thousand rows every poll
 * kept the page busy for a large part of each second; an administrator filters anyway.
 */
const ROWS_STEP = 200
const PHASES = ['booting', 'planning', 'tools', 'downloading', 'extracting', 'finalizing', 'seeding', 'done', 'failed', 'booted']
/** Failures first, then the nodes furthest from done. */
const MONITOR_ORDER = ['failed', 'booting', 'planning', 'tools', 'downloading', 'extracting', 'finalizing', 'seeding', 'done', 'booted']
/** One collator for every comparison: one per call made sorting 1 000 nodes take 0.3 s. */
const naturally = new Intl.Collator('en', { numeric: true }).compare
// Read once: reading a computed style after the table changed forces a style pass over it.
const css = getComputedStyle(document.documentElement)
const PHASE_COLORS = Object.fromEntries(PHASES.map(p => [p, css.getPropertyValue(`--${p}`).trim() || '#888']))
const phaseColor = p => PHASE_COLORS[p] ?? '#888'

const state = {
  nodes: new Map(),
  /** node -> [[ms, download bytes/s]] since this page opened */
  rates: new Map(),
  seq: undefined,
  series: [],
  lastFull: 0,
  intervalSeconds: 2,
  sort: { key: 'monitor', desc: false },
  filter: { phase: '', group: '', image: '', search: '' },
  node: undefined,
  rowLimit: ROWS_STEP,
  renders: 0
}

const $ = sel => document.querySelector(sel)
const esc = s => String(s ?? '').replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]))

function bytes (n) {
  if (n === undefined || n === null) return ''
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}
const rate = n => n === undefined || n === null ? '' : `${bytes(n)}/s`
const ago = ms => { const s = Math.max(0, Math.round((Date.now() - ms) / 1000)); return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : `${Math.floor(s / 3600)} h` }
const clock = ms => new Date(ms).toLocaleTimeString()

async function getJson (url) {
  const res = await fetch(url, { cache: 'no-store' })
  if (!res.ok) throw new Error(`${url}: ${res.status} ${(await res.text()).slice(0, 200)}`)
  return res.json()
}

// ---- data ----

async function pollNodes () {
  const full = state.seq === undefined || Date.now() - state.lastFull > FULL_RELOAD_MS
  const since = full ? '' : `&since=${state.seq}`
  const fresh = []
  let seq
  for (let offset = 0; ; offset += PAGE) {
    const page = await getJson(`/api/nodes?sort=node&limit=${PAGE}&offset=${offset}${since}`)
    seq ??= page.seq
    fresh.push(...page.nodes)
    if (offset + page.nodes.length >= page.total || page.nodes.length === 0) break
  }
  if (full) {
    const kept = new Set(fresh.map(n => n.node))
    for (const name of state.nodes.keys()) if (!kept.has(name)) { state.nodes.delete(name); state.rates.delete(name) }
    state.lastFull = Date.now()
  }
  for (const n of fresh) {
    const before = state.nodes.get(n.node)
    state.nodes.set(n.node, n)
    if (n.downloadRate !== undefined && (before === undefined || before.updatedAt !== n.updatedAt)) {
      const points = state.rates.get(n.node) ?? []
      points.push([n.updatedAt, n.downloadRate])
      if (points.length > NODE_POINTS) points.shift()
      state.rates.set(n.node, points)
    }
  }
  state.seq = seq
  return fresh.length > 0 || full
}

async function pollFleet () {
  const last = state.series.length > 0 ? state.series[state.series.length - 1].at : 0
  const f = await getJson(`/api/fleet?since=${last}`)
  state.series.push(...f.series)
  if (state.series.length > 1800) state.series.splice(0, state.series.length - 1800)
  state.intervalSeconds = f.intervalSeconds
  state.fleet = f
}

// ---- fleet table ----

function compare (key) {
  const byName = (a, b) => naturally(a.node, b.node)
  if (key === 'monitor') {
    return (a, b) => (MONITOR_ORDER.indexOf(a.phase) - MONITOR_ORDER.indexOf(b.phase)) || ((a.progress ?? 0) - (b.progress ?? 0)) || byName(a, b)
  }
  if (key === 'phase') return (a, b) => (PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase)) || byName(a, b)
  if (key === 'node') return byName
  return (a, b) => {
    const x = a[key] ?? ''
    const y = b[key] ?? ''
    return (typeof x === 'number' && typeof y === 'number' ? x - y : naturally(String(x), String(y))) || byName(a, b)
  }
}

function matches (n) {
  const f = state.filter
  return (f.phase === '' || n.phase === f.phase) && (f.group === '' || n.group === f.group) &&
    (f.image === '' || n.image === f.image) && (f.search === '' || n.node.toLowerCase().includes(f.search.toLowerCase()))
}

function progressBar (p) {
  const pct = Math.round((p ?? 0) * 1000) / 10
  return `<div class="bar"><div style="width:${pct}%"></div><span>${pct.toFixed(1)}%</span></div>`
}

function row (n) {
  const stale = !['done', 'failed', 'booted'].includes(n.phase) && Date.now() - n.updatedAt > 3 * state.intervalSeconds * 1000
  const detail = n.error !== undefined ? `<b>${esc(n.error.code)}</b>: ${esc(n.error.message)}` : esc([n.step, n.detail].filter(x => x).join(': '))
  return `<tr class="node ${n.phase === 'failed' ? 'failed' : ''} ${stale ? 'stale' : ''}" data-node="${esc(n.node)}" data-phase="${esc(n.phase)}" data-progress="${n.progress ?? 0}">` +
    `<td><a href="#node/${encodeURIComponent(n.node)}">${esc(n.node)}</a></td><td>${esc(n.group)}</td><td>${esc(n.image)}</td>` +
    `<td><span class="phase" style="background:${phaseColor(n.phase)}">${esc(n.phase)}</span></td><td>${progressBar(n.progress)}</td>` +
    `<td class="num">${rate(n.downloadRate)}</td><td class="num">${rate(n.uploadRate)}</td>` +
    `<td class="num">${bytes(n.bytesFromServer)}</td><td class="num">${bytes(n.bytesFromPeers)}</td>` +
    `<td class="num">${n.peers ?? ''}</td><td class="num">${ago(n.updatedAt)}</td><td class="detail">${detail}</td></tr>`
}

function fillSelect (select, values) {
  const current = select.value
  const wanted = ['', ...values]
  if ([...select.options].map(o => o.value).join('\n') === wanted.join('\n')) return
  select.innerHTML = wanted.map(v => `<option value="${esc(v)}">${v === '' ? 'all' : esc(v)}</option>`).join('')
  select.value = wanted.includes(current) ? current : ''
}

function renderFleet () {
  const all = [...state.nodes.values()]
  const counts = {}
  const groups = new Set()
  const images = new Set()
  for (const n of all) {
    counts[n.phase] = (counts[n.phase] ?? 0) + 1
    if (n.group) groups.add(n.group)
    if (n.image) images.add(n.image)
  }
  $('#phase-counts').innerHTML = `<b>${all.length} nodes</b> ` + PHASES.filter(p => counts[p]).map(p => `<span data-phase="${p}" style="background:${phaseColor(p)}">${p} ${counts[p]}</span>`).join('')
  fillSelect($('#filter-phase'), PHASES)
  fillSelect($('#filter-group'), [...groups].sort())
  fillSelect($('#filter-image'), [...images].sort())

  const shown = all.filter(matches)
  const cmp = compare(state.sort.key)
  shown.sort(state.sort.desc ? (a, b) => cmp(b, a) : cmp)
  $('#nodes tbody').innerHTML = shown.slice(0, state.rowLimit).map(row).join('')
  $('#shown').textContent = shown.length > state.rowLimit ? `first ${state.rowLimit} of ${shown.length} shown` : `${shown.length} shown`
  $('#more').hidden = shown.length <= state.rowLimit
  for (const th of document.querySelectorAll('#nodes th[data-sort]')) {
    th.classList.toggle('sorted', th.dataset.sort === state.sort.key)
    th.classList.toggle('desc', th.dataset.sort === state.sort.key && state.sort.desc)
  }
  drawFleetCharts()
  state.renders++
  document.body.dataset.seq = String(state.seq)
  document.body.dataset.renders = String(state.renders)
}

// ---- charts ----

function chart (canvas, lines, opts = {}) {
  const ctx = canvas.getContext('2d')
  const w = canvas.width
  const h = canvas.height
  const pad = { l: 62, r: 8, t: 8, b: 18 }
  ctx.clearRect(0, 0, w, h)
  ctx.font = '11px system-ui'
  ctx.fillStyle = '#6a737d'
  const xs = lines.flatMap(l => l.points.map(p => p[0]))
  if (xs.length === 0) { ctx.fillText('no data yet', w / 2 - 30, h / 2); return }
  const x0 = Math.min(...xs)
  const x1 = Math.max(x0 + 1000, ...xs)
  const top = Math.max(1, ...lines.flatMap(l => l.points.map(p => p[1])))
  const X = x => pad.l + (x - x0) / (x1 - x0) * (w - pad.l - pad.r)
  const Y = y => h - pad.b - y / top * (h - pad.t - pad.b)
  ctx.strokeStyle = '#d8dee4'
  ctx.beginPath(); ctx.moveTo(pad.l, pad.t); ctx.lineTo(pad.l, h - pad.b); ctx.lineTo(w - pad.r, h - pad.b); ctx.stroke()
  ctx.fillText((opts.format ?? String)(top), 2, pad.t + 8)
  ctx.fillText('0', pad.l - 12, h - pad.b)
  ctx.fillText(clock(x0), pad.l, h - 4)
  ctx.fillText(clock(x1), w - pad.r - 60, h - 4)
  let legend = pad.l + 8
  for (const l of lines) {
    ctx.strokeStyle = l.color
    ctx.lineWidth = l.width ?? 1.5
    ctx.beginPath()
    l.points.forEach(([x, y], i) => i === 0 ? ctx.moveTo(X(x), Y(y)) : ctx.lineTo(X(x), Y(y)))
    ctx.stroke()
    if (l.label !== undefined) { ctx.fillStyle = l.color; ctx.fillText(l.label, legend, pad.t + 10); legend += ctx.measureText(l.label).width + 12 }
  }
  ctx.lineWidth = 1
}

function stacked (canvas, samples) {
  const lines = []
  const base = samples.map(() => 0)
  for (const p of PHASES) {
    if (!samples.some(s => s.phases[p])) continue
    samples.forEach((s, i) => { base[i] += s.phases[p] ?? 0 })
    lines.push({ label: p, color: phaseColor(p), points: samples.map((s, i) => [s.at, base[i]]) })
  }
  chart(canvas, lines.reverse(), { format: n => `${n} nodes` })
}

function drawFleetCharts () {
  const s = state.series
  chart($('#chart-download'), [{ label: 'download', color: '#0969da', points: s.map(x => [x.at, x.downloadRate]) }], { format: rate })
  chart($('#chart-upload'), [
    { label: 'server', color: '#cf222e', points: s.map(x => [x.at, x.serverUploadRate]) },
    { label: 'peers', color: '#1f883d', points: s.map(x => [x.at, x.peerUploadRate]) }
  ], { format: rate })
  stacked($('#chart-phases'), s)
  const shown = [...state.nodes.values()].filter(matches).slice(0, 200)
  chart($('#chart-nodes'), shown.map((n, i) => ({ color: `hsl(${(i * 47) % 360} 60% 45%)`, width: 1, points: state.rates.get(n.node) ?? [] })), { format: rate })
}

// ---- one node ----

async function renderNode (name) {
  let d
  try { d = await getJson(`/api/nodes/${encodeURIComponent(name)}`) } catch (err) {
    $('#node-title').textContent = `${name}: ${err.message}`
    return
  }
  $('#node-title').innerHTML = `${esc(d.node)} <span class="phase" style="background:${phaseColor(d.phase)}">${esc(d.phase)}</span>`
  const hw = d.hardware
  const facts = [
    ['Image', d.image], ['Group', d.group], ['Step', [d.step, d.detail].filter(x => x).join(': ')],
    ['Progress', d.progress !== undefined ? `${(d.progress * 100).toFixed(1)} %` : ''],
    ['Down / up', d.downloadRate !== undefined ? `${rate(d.downloadRate)} / ${rate(d.uploadRate ?? 0)}` : ''],
    ['From server / peers', d.bytesFromServer !== undefined ? `${bytes(d.bytesFromServer)} / ${bytes(d.bytesFromPeers ?? 0)}` : ''], ['Uploaded', bytes(d.uploaded)], ['Peers', d.peers],
    ['Address', d.address], ['Host', d.identity?.hostname], ['MACs', d.identity?.macs.join(', ')], ['Addresses', d.identity?.addresses.join(', ')],
    ['Hardware', hw !== undefined ? `${hw.cpus} CPUs${hw.cpuModel ? ` (${hw.cpuModel})` : ''}, ${bytes(hw.memoryBytes)} memory, disks ${hw.disks.map(k => `${k.name} ${bytes(k.bytes)}`).join(', ') || 'none'}` : ''],
    ['First seen', clock(d.firstSeen)], ['Updated', `${ago(d.updatedAt)} ago`], ['Warning', d.warning]
  ]
  $('#node-facts').innerHTML = facts.filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => `<b>${esc(k)}</b><span>${esc(v)}</span>`).join('')
  const err = $('#node-error')
  err.hidden = d.error === undefined
  if (d.error !== undefined) err.innerHTML = `<b>${esc(d.error.code)}</b>${d.error.step ? ` in ${esc(d.error.step)}` : ''}: ${esc(d.error.message)}`
  $('#node-timeline tbody').innerHTML = d.timeline.map(t => `<tr><td>${clock(t.at)}</td><td>${esc(t.phase)}</td><td>${esc(t.step)}</td><td>${esc(t.detail)}</td></tr>`).join('')
  $('#node-log').textContent = d.log ?? '(no log: a node sends its console log when it fails)'
  chart($('#chart-node'), [
    { label: 'download', color: '#0969da', points: d.rates.map(r => [r[0], r[1]]) },
    { label: 'upload', color: '#1f883d', points: d.rates.map(r => [r[0], r[2]]) }
  ], { format: rate })
}

// ---- history ----

async function renderHistory () {
  const q = new URLSearchParams({ limit: '500' })
  const image = $('#history-image').value.trim()
  const since = $('#history-since').value.trim()
  if (image) q.set('image', image)
  if (since) q.set('since', since)
  try {
    const rows = await getJson(`/api/history?${q}`)
    $('#history-status').textContent = `${rows.length} deployments`
    $('#history tbody').innerHTML = rows.map(r => `<tr class="${r.outcome === 'failed' ? 'failed' : ''}"><td><a href="#node/${encodeURIComponent(r.node)}">${esc(r.node)}</a></td>` +
      `<td>${esc(r.image)}</td><td>${esc(r.group)}</td><td>${new Date(r.startedAt).toLocaleString()}</td>` +
      `<td class="num">${r.endedAt ? ((r.endedAt - r.startedAt) / 1000).toFixed(1) : ''}</td><td>${esc(r.outcome)}</td><td>${esc(r.step)}</td>` +
      `<td>${esc(r.errorCode)}${r.errorMessage ? `: ${esc(r.errorMessage)}` : ''}</td><td class="num">${bytes(r.bytesFromServer)}</td><td class="num">${bytes(r.bytesFromPeers)}</td></tr>`).join('')
  } catch (err) { $('#history-status').textContent = err.message }
}

// ---- views and loop ----

function view () {
  const hash = decodeURIComponent(location.hash.slice(1))
  if (hash.startsWith('node/')) return { name: 'node', node: hash.slice(5) }
  return { name: hash === 'history' ? 'history' : 'fleet' }
}

function show () {
  const v = view()
  for (const name of ['fleet', 'node', 'history']) $(`#view-${name}`).hidden = name !== v.name
  state.node = v.node
  if (v.name === 'node') renderNode(v.node)
  if (v.name === 'history') renderHistory()
  if (v.name === 'fleet') renderFleet()
}

async function tick () {
  const started = Date.now()
  try {
    await Promise.all([pollNodes(), pollFleet()])
    const v = view()
    if (v.name === 'fleet') renderFleet()
    if (v.name === 'node') await renderNode(v.node)
    $('#status').textContent = `${state.nodes.size} nodes · reports every ${state.intervalSeconds} s · updated ${new Date().toLocaleTimeString()}`
  } catch (err) {
    $('#status').textContent = `server unreachable: ${err.message}`
  }
  setTimeout(tick, Math.max(POLL_MS / 4, POLL_MS - (Date.now() - started)))
}

for (const th of document.querySelectorAll('#nodes th[data-sort]')) {
  th.addEventListener('click', () => {
    const key = th.dataset.sort
    state.sort = { key, desc: state.sort.key === key ? !state.sort.desc : false }
    renderFleet()
  })
}
for (const [id, key] of [['#filter-phase', 'phase'], ['#filter-group', 'group'], ['#filter-image', 'image'], ['#filter-search', 'search']]) {
  $(id).addEventListener('input', e => { state.filter[key] = e.target.value; renderFleet() })
}
$('#phase-counts').addEventListener('click', e => {
  const p = e.target.dataset?.phase
  if (p === undefined) return
  state.filter.phase = state.filter.phase === p ? '' : p
  $('#filter-phase').value = state.filter.phase
  renderFleet()
})
$('#nodes tbody').addEventListener('click', e => {
  const tr = e.target.closest('tr.node')
  if (tr !== null && e.target.tagName !== 'A') location.hash = `node/${encodeURIComponent(tr.dataset.node)}`
})
for (const id of ['#history-image', '#history-since']) $(id).addEventListener('change', renderHistory)
$('#more').addEventListener('click', () => { state.rowLimit += ROWS_STEP; renderFleet() })
window.addEventListener('hashchange', show)
show()
tick()
