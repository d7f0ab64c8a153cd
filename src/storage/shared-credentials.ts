import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../errors.js';

/**
 * A repository's own S3 credentials: a profile of an AWS shared credentials file (what a Docker or Kubernetes secret
 * mounts as a file), read by the AWS SDK's own INI provider (fromIni) when the S3 driver first signs a request.
 * This module checks beforehand, with node:fs only, that the file is readable and holds the profile, so a typo is
 * one line naming the repository rather than an SDK error at the first request. The keys are never read here.
 */
export interface SharedCredentials {
  /** The repository's name, for messages. */
  repository: string;
  /** Absolute path; default AWS_SHARED_CREDENTIALS_FILE, then ~/.aws/credentials. */
  file: string | undefined;
  /** Default `default`. */
  profile: string | undefined;
}

export function defaultCredentialsFile(env: NodeJS.ProcessEnv = process.env): string {
  return env.AWS_SHARED_CREDENTIALS_FILE || join(env.HOME ?? homedir(), '.aws', 'credentials');
}

function defaultConfigFile(env: NodeJS.ProcessEnv): string {
  return env.AWS_CONFIG_FILE || join(env.HOME ?? homedir(), '.aws', 'config');
}

/** The INI section names of a file (`[name]`, and `[profile name]` as the AWS config file writes them). */
export function iniSections(text: string): Set<string> {
  const sections = new Set<string>();
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*\[\s*(?:profile\s+)?([^\]\s]+)\s*\]\s*(?:[#;].*)?$/.exec(line);
    if (match) sections.add(match[1]!);
  }
  return sections;
}

function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Throws a UsageError naming the repository when its credentials file is unreadable or lacks the profile. */
export function checkSharedCredentials(credentials: SharedCredentials, env: NodeJS.ProcessEnv = process.env): void {
  const profile = credentials.profile ?? 'default';
  const file = credentials.file ?? defaultCredentialsFile(env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    // A profile alone may live in the AWS config file instead (a role, SSO, credential_process).
    if (credentials.file === undefined && iniSections(readIfPresent(defaultConfigFile(env)) ?? '').has(profile)) return;
    throw new UsageError(
      `repository ${credentials.repository}: cannot read its credentials file ${file} (${code})`,
      code === 'EACCES' ? 'make the file readable by the user pgdr runs as (for archive_command: postgres)' : 'fix credentials.file in the config file, or mount the secret there',
      err,
    );
  }
  if (iniSections(text).has(profile)) return;
  if (credentials.file === undefined && iniSections(readIfPresent(defaultConfigFile(env)) ?? '').has(profile)) return;
  throw new UsageError(
    `repository ${credentials.repository}: its credentials file ${file} has no profile [${profile}]`,
    'fix credentials.profile in the config file, or add the profile (aws_access_key_id, aws_secret_access_key) to the file',
  );
}
