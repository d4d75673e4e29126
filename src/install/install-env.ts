// What the installer leaves in every system it installs, for its first boot and for
// post-install steps: which node it is, which image, and where the image server and
// the reports go. A first-boot service (examples/firstboot/si-booted) reads it to report
// "booted" to the server. Shell syntax, one KEY='value' a line, so `.` can read it.
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

export const INSTALL_ENV_FILE = 'etc/swarmimager/install.env'
/** The node's report credential: the first-boot report is signed with it, as the agent's are. Root only. */
export const REPORT_KEY_FILE = 'etc/swarmimager/report.key'

export interface InstallEnv {
  SI_NODE: string
  SI_IMAGE: string
  SI_SERVER: string
  SI_MONITOR: string
  SI_FIRMWARE: string
  SI_INSTALLED_AT: string
}

/** Single quotes keep every character but the quote itself, which is closed, escaped and reopened. */
function shellQuote (value: string): string {
  return `'${value.replace(/'/g, '\'\\\'\'')}'`
}

export function renderInstallEnv (env: InstallEnv): string {
  return '# Written by swarmimager\'s installer (si-agent install); read by its first-boot report.\n' +
    Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`).join('\n') + '\n'
}

export async function writeInstallEnv (root: string, env: InstallEnv, reportCredential?: string): Promise<void> {
  const path = join(root, INSTALL_ENV_FILE)
  await mkdir(dirname(path), { recursive: true, mode: 0o755 })
  await writeFile(path, renderInstallEnv(env), { mode: 0o644 })
  if (reportCredential !== undefined) await writeFile(join(root, REPORT_KEY_FILE), `${reportCredential}\n`, { mode: 0o600 })
}
