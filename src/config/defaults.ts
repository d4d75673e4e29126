// A component's config: its defaults with the given overrides laid over them, frozen.

/**
 * `defaults` with the given overrides; an override left undefined keeps its default, so
 * that an optional flag passed through as undefined changes nothing.
 */
export function withDefaults<T extends object> (defaults: Readonly<T>, overrides: Partial<T> | undefined): Readonly<T> {
  const merged = { ...defaults }
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value
  }
  return Object.freeze(merged)
}
