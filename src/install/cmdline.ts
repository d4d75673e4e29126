// The kernel command line as the kernel reads it: words separated by blanks, a word in
// double quotes kept whole, key=value words as settings (the last one wins).
/** Words of a kernel command line; "key=a b" in double quotes is one word. */
export function splitCmdline (text: string): string[] {
  const words: string[] = []
  let word = ''
  let quoted = false
  let started = false
  for (const ch of text) {
    if (ch === '"') { quoted = !quoted; started = true; continue }
    if (!quoted && /\s/.test(ch)) {
      if (started) words.push(word)
      word = ''
      started = false
      continue
    }
    word += ch
    started = true
  }
  if (started) words.push(word)
  return words
}

/** key=value words of a kernel command line (the last one wins, as in the kernel). */
export function parseCmdline (text: string): Map<string, string> {
  const map = new Map<string, string>()
  for (const word of splitCmdline(text)) {
    const eq = word.indexOf('=')
    if (eq > 0) map.set(word.slice(0, eq), word.slice(eq + 1))
  }
  return map
}
