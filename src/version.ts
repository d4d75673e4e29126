// Replaced by build.mjs at bundle time; the fallback serves runs from source.
declare const SI_VERSION: string | undefined
export const VERSION: string = typeof SI_VERSION === 'string' ? SI_VERSION : '0.1.0-dev'
