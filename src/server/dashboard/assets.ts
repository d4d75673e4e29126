// The dashboard's files (static/: HTML, CSS, browser JavaScript, no framework, nothing
// fetched from elsewhere), served at / and /dashboard/NAME. build.mjs embeds the folder
// into the executable as DASHBOARD_FILES; run from source, they are read from disk.
import { readdirSync, readFileSync } from 'node:fs'
import { extname } from 'node:path'

/** build.mjs: every file of static/ by name, as JSON text */
declare const DASHBOARD_FILES: string | undefined

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml'
}

export interface Asset { body: Buffer; contentType: string }

let assets: Map<string, Asset> | undefined

function load (): Map<string, Asset> {
  const files = typeof DASHBOARD_FILES === 'string' ? JSON.parse(DASHBOARD_FILES) as Record<string, string> : readStaticDir()
  return new Map(Object.entries(files).map(([name, text]) => [name, { body: Buffer.from(text, 'utf8'), contentType: CONTENT_TYPES[extname(name)] ?? 'application/octet-stream' }]))
}

/** Run from source: every file of static/, as build.mjs embeds them. */
function readStaticDir (): Record<string, string> {
  const dir = new URL('./static/', import.meta.url as string)
  return Object.fromEntries(readdirSync(dir).sort().map(name => [name, readFileSync(new URL(name, dir), 'utf8')]))
}

export function dashboardAsset (name: string): Asset | undefined {
  assets ??= load()
  return assets.get(name)
}
