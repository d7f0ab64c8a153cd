import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';

/**
 * pgdr's own secrets (the etcd password, and any other its environment carries) can be given as NAME, or as
 * NAME_FILE naming a file that holds the value: Docker and Kubernetes mount secrets as files, and a value read from
 * a file never shows in `/proc/<pid>/environ`, `docker inspect` or a pod spec. One trailing newline is dropped (a
 * file written with `echo` has one); nothing else is trimmed. Setting both is refused rather than one silently
 * winning. Errors name the variable and the path, never the value.
 */
export function secretFromEnv(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  readFile: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): string | undefined {
  const direct = env[name];
  const path = env[`${name}_FILE`];
  const hasDirect = direct !== undefined && direct !== '';
  const hasFile = path !== undefined && path !== '';
  if (hasDirect && hasFile) {
    throw new UsageError(`both ${name} and ${name}_FILE are set`, `set only one: ${name}_FILE names a file holding the value`);
  }
  if (!hasFile) return hasDirect ? direct : undefined;
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new UsageError(`cannot read ${name}_FILE ${path} (${code})`, `check the path in ${name}_FILE and that pgdr's user may read it`, err);
  }
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new UsageError(`${name}_FILE ${path} is empty`, `write the value into ${path}, or unset ${name}_FILE`);
  return value;
}
