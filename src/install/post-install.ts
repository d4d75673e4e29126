// The plan's post-install steps: shell snippets run by the image's own /bin/sh in a
// chroot of the installed system, one after another, each bounded in time. A failing
// step fails the install: a node half configured is not "done". The plan's secrets reach
// the steps as SI_SECRET_NAME variables only; whatever a step prints (its lines, its
// error) has every secret value replaced by [secret NAME] before anyone sees it.
import { SiError } from '../errors.ts'
import { tail } from './command.ts'
import { hasFile, withChroot } from './chroot.ts'
import type { PostInstallStep } from '../formats/plan.ts'

export const SECRET_ENV_PREFIX = 'SI_SECRET_'

export interface StepContext {
  /** variables the steps can use (SI_NODE, SI_IMAGE, ...) */
  env: Record<string, string>
  /** the plan's secrets, by name */
  secrets?: Record<string, string>
  onLine: (step: PostInstallStep, line: string) => void
  signal?: AbortSignal
}

/** The environment a step sees: a clean one, not the agent's. */
export function stepEnvironment (vars: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8', ...vars }
}

/** `text` with each secret's value replaced by [secret NAME], longest values first. */
export function redactSecrets (text: string, secrets: Record<string, string>): string {
  const byLength = Object.entries(secrets).sort((a, b) => b[1].length - a[1].length)
  return byLength.reduce((t, [name, value]) => t.split(value).join(`[secret ${name}]`), text)
}

export async function runPostInstall (root: string, steps: PostInstallStep[], ctx: StepContext): Promise<void> {
  if (steps.length === 0) return
  if (!await hasFile(root, 'bin/sh')) throw new SiError('ERR_POST_INSTALL', 'the image has no /bin/sh to run the post-install steps with')
  const secrets = ctx.secrets ?? {}
  const secretEnv = Object.fromEntries(Object.entries(secrets).map(([name, value]) => [`${SECRET_ENV_PREFIX}${name}`, value]))
  await withChroot(root, async run => {
    for (const step of steps) {
      try {
        await run(['/bin/sh', '-ec', step.run], {
          env: stepEnvironment({ ...ctx.env, ...secretEnv }),
          timeoutMs: step.timeoutSeconds * 1000,
          signal: ctx.signal,
          onLine: line => ctx.onLine(step, redactSecrets(line, secrets))
        })
      } catch (err) {
        // No cause: the original message may hold a secret.
        throw new SiError('ERR_POST_INSTALL', `post-install ${JSON.stringify(step.name)} failed: ${tail(redactSecrets((err as Error).message, secrets), 1000)}`)
      }
    }
  })
}
