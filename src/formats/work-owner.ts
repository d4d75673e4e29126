// Work files and directories (an image being added, a payload being staged) carry the
// pid of the process that made them in their name, so that whoever starts next can tell
// what a killed or crashed run left behind from what a live one is still using.

/** Whether a process with this pid exists (on this machine). */
export function isRunning (pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
