// Installs against real disks in-process: loop devices backed by sparse files, the
// installer run as the agent runs it (its JSON output dropped, its reports sent), and
// the reason a test is skipped when the machine cannot do it.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { open } from 'node:fs/promises'
import { PassThrough } from 'node:stream'
import { install, type InstallOptions } from '../../src/install/install.ts'
import { installOutput, type InstallEvent } from '../../src/install/install-events.ts'

/** Why a test needing root and these tools is skipped here, or false when it can run. */
export function skipUnlessRootWith (tools: string[], needsRootFor: string): string | false {
  const missing = tools.filter(t => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0)
  return process.getuid?.() !== 0 ? `needs root (${needsRootFor})` : missing.length > 0 ? `missing tools: ${missing.join(', ')}` : false
}

/** Runs a command to its end; its stdout, or the test fails naming it and its stderr. */
export function sh (cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** Blank disks as loop devices (with partition scanning), all detached at the end. */
export class LoopDisks {
  private readonly devices: string[] = []

  async create (file: string, bytes: number): Promise<string> {
    const fh = await open(file, 'w')
    await fh.truncate(bytes)
    await fh.close()
    const device = sh('losetup', ['--find', '--show', '--partscan', file]).trim()
    this.devices.push(device)
    return device
  }

  detachAll (): void {
    for (const device of this.devices.splice(0)) spawnSync('losetup', ['-d', device])
  }
}

export interface InstallRun { events: InstallEvent[]; result?: Awaited<ReturnType<typeof install>>; error?: unknown }

/** One install, its events kept and reported to `monitor`; a failure is returned, not thrown. */
export async function installOnce (opts: Omit<InstallOptions, 'emit'>, monitor: string | undefined): Promise<InstallRun> {
  const events: InstallEvent[] = []
  const output = installOutput({ json: true, node: opts.node, monitor, out: new PassThrough().resume() })
  try {
    return { events, result: await install({ ...opts, emit: e => { events.push(e); output.emit(e) } }) }
  } catch (error) {
    return { events, error }
  } finally {
    await output.flush()
  }
}
