// The plan's post-install steps: shell snippets run by the image's own /bin/sh in a
// chroot of the installed system, one after another, each bounded in time. A failing
// step fails the install: a node half configured is not "done".
import { SiError } from '../errors.ts'
import { tail } from './command.ts'
import { hasFile, withChroot } from './chroot.ts'
import type { PostInstallStep } from '../formats/plan.ts'

export interface StepContext {
  /** variables the steps can use (SI_NODE, SI_IMAGE, ...) */
  env: Record<string, string>
  onLine: (step: PostInstallStep, line: string) => void
  signal?: AbortSignal
}

/** The environment a step sees: a clean one, not the agent's. */
export function stepEnvironment (vars: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8', ...vars }
}

export async function runPostInstall (root: string, steps: PostInstallStep[], ctx: StepContext): Promise<void> {
  if (steps.length === 0) return
  if (!await hasFile(root, 'bin/sh')) throw new SiError('ERR_POST_INSTALL', 'the image has no /bin/sh to run the post-install steps with')
  await withChroot(root, async run => {
    for (const step of steps) {
      try {
        await run(['/bin/sh', '-ec', step.run], {
          env: stepEnvironment(ctx.env),
          timeoutMs: step.timeoutSeconds * 1000,
          signal: ctx.signal,
          onLine: line => ctx.onLine(step, line)
        })
      } catch (err) {
        throw new SiError('ERR_POST_INSTALL', `post-install ${JSON.stringify(step.name)} failed: ${tail((err as Error).message, 1000)}`, { cause: err })
      }
    }
  })
}
