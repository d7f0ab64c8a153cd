import { UsageError } from '../errors.js';
import type { ObjectLockSettings } from '../repo/object-lock.js';

/**
 * Several repositories (the config file's `repositories:`): which one a command works with, which ones `wal push`
 * writes to and in which order `wal fetch` asks them. Pure, and free of zod and YAML: `wal push` and the `wal fetch`
 * fast path call it on every WAL file.
 */
export type RepositoryContent = 'wal' | 'backups' | 'etcd';
export const REPOSITORY_CONTENTS: readonly RepositoryContent[] = ['wal', 'backups', 'etcd'];

export interface RepositoryCredentials {
  /** An AWS shared credentials file (INI); default: the AWS SDK's (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials). */
  file: string | undefined;
  /** The profile (section) in it; default `default`. */
  profile: string | undefined;
}

export interface RepositorySettings {
  /** The name in `repositories:`; undefined for the one repository given by URL (flag, environment, `repo:`). */
  name: string | undefined;
  url: string;
  s3Endpoint: string | undefined;
  s3Region: string | undefined;
  s3ForcePathStyle: boolean;
  /** Its own credentials file and profile; undefined: the AWS SDK's default chain (AWS_* variables, ...). */
  credentials: RepositoryCredentials | undefined;
  /** age recipients for what is written to it (used by encryption); empty: the global setting applies. */
  encryptRecipients: string[];
  /** What pgdr writes to it on its own: WAL (wal push), base backups (backup now), etcd snapshots. */
  receives: RepositoryContent[];
  /**
   * Its own Object Lock mode and margin (objectLockMode: off is null): R2 and B2 differ, and an estate may lock only
   * its off-site copy. Undefined: the global setting applies.
   */
  objectLock?: ObjectLockSettings | null;
}

/** The Object Lock a repository is written with: its own, else the global one. */
export function objectLockFor(repository: RepositorySettings | undefined, global: ObjectLockSettings | undefined): ObjectLockSettings | undefined {
  if (repository?.objectLock === undefined) return global;
  return repository.objectLock ?? undefined;
}

/** How a repository is named in messages: its name, or its URL. */
export function repositoryLabel(repository: Pick<RepositorySettings, 'name' | 'url'>): string {
  return repository.name ?? repository.url;
}

/** Letters, digits, '.', '_' and '-', starting with a letter: never taken for a URL. */
export function isRepositoryName(value: string): boolean {
  return /^[A-Za-z][A-Za-z0-9._-]{0,62}$/.test(value);
}

/**
 * The repository `--repo` (or PGDR_REPO, or `repo:`) picks among the configured ones: a name, or a URL (the
 * configured entry with that URL, else `adHoc(url)`, the URL with the global S3 settings and credentials).
 */
export function selectRepository(
  selection: string,
  configured: readonly RepositorySettings[],
  adHoc: (url: string) => RepositorySettings,
): RepositorySettings {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(selection)) {
    return configured.find((r) => r.url === selection) ?? adHoc(selection);
  }
  const named = configured.find((r) => r.name === selection);
  if (named !== undefined) return named;
  throw new UsageError(
    `no repository named ${JSON.stringify(selection)}${configured.length > 0 ? `; the config file names ${namesOf(configured)}` : ' (the config file names none)'}`,
    configured.length > 0 ? `use --repo with one of those names, or a URL (s3://bucket/prefix, file:///path)` : 'add it under repositories: in the config file, or give a URL (s3://bucket/prefix, file:///path)',
  );
}

function namesOf(repositories: readonly RepositorySettings[]): string {
  return repositories.map((r) => repositoryLabel(r)).join(', ');
}

/** What the repositories pgdr writes to are kept apart by. */
export interface RepositoryChoice {
  /** Every repository the config file names, in its order (empty without `repositories:`). */
  repositories: readonly RepositorySettings[];
  /** The one named by --repo / PGDR_REPO / `repo:`, or the one repository when none are configured. */
  repository: RepositorySettings | undefined;
}

/**
 * The one repository a command that writes `content` (or reads, with content undefined) works with: the selected
 * one; else the only configured repository that receives `content` (or the only one configured). Several and none
 * named is refused rather than guessed (a backup in the wrong cloud looks like success), naming the choices.
 */
export function repositoryFor(choice: RepositoryChoice, content: RepositoryContent | undefined, command: string): RepositorySettings {
  if (choice.repository !== undefined) return choice.repository;
  const candidates = content === undefined ? choice.repositories : choice.repositories.filter((r) => r.receives.includes(content));
  if (candidates.length === 1) return candidates[0]!;
  const described = content === undefined ? 'repositories' : `repositories that receive ${content}`;
  if (candidates.length === 0) {
    throw new UsageError(`${command}: the config file names no ${described}`, `name one with --repo (${namesOf(choice.repositories)}), or add ${content} to its receives:`);
  }
  throw new UsageError(`${command}: the config file names several ${described} (${namesOf(candidates)}) and no --repo picks one`, `run it with --repo NAME for each repository that should get it, e.g. --repo ${repositoryLabel(candidates[0]!)}`);
}

/** The repositories a command that goes over each in turn (expire, verify, health) works with. */
export function repositoriesToVisit(choice: RepositoryChoice): RepositorySettings[] {
  return choice.repository !== undefined ? [choice.repository] : [...choice.repositories];
}

/**
 * Where `wal push` stores each file: every configured repository that receives WAL, unless --repo names one. All of
 * them must hold the file before PostgreSQL hears success.
 */
export function walPushTargets(choice: RepositoryChoice): RepositorySettings[] {
  if (choice.repository !== undefined) return [choice.repository];
  const targets = choice.repositories.filter((r) => r.receives.includes('wal'));
  if (targets.length === 0) {
    throw new UsageError('wal push: the config file names no repository that receives wal', `add wal to the receives: of one of ${namesOf(choice.repositories)}, or name one with --repo`);
  }
  return targets;
}

/**
 * The order `wal fetch` asks repositories for a file: the selected one first, then every other configured one (a
 * repository that does not receive WAL may hold WAL `pgdr copy` brought), each in the config file's order.
 */
export function walFetchSources(choice: RepositoryChoice): RepositorySettings[] {
  const first = choice.repository;
  if (first !== undefined && (first.name === undefined || !choice.repositories.includes(first))) return [first];
  return first === undefined ? [...choice.repositories] : [first, ...choice.repositories.filter((r) => r !== first)];
}

/** One string for a list of repositories: what spool markers and prefetched files are keyed by. */
export function repositoriesKey(repositories: readonly RepositorySettings[]): string {
  return repositories.map((r) => r.url).join(' ');
}
