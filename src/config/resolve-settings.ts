import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { parseDuration } from './duration.js';
import { objectLockFor, REPOSITORY_CONTENTS, selectRepository, type RepositorySettings } from './repositories.js';
import type { ObjectLockSettings } from '../repo/object-lock.js';
import type { ConfigFile } from './settings.js';

export type { RepositorySettings } from './repositories.js';

/**
 * Every setting, resolved once: flags > environment > config file > defaults (../shared/CLI.md).
 * Credentials never pass through here: the S3 driver takes them from the AWS SDK's default chain.
 */
export interface Settings {
  /**
   * The repository's URL, endpoint, path style and region: those of `repository`, or when several are configured
   * and none is named, of the first configured one (commands pick theirs through src/config/repositories.ts).
   */
  repo: string;
  s3Endpoint: string | undefined;
  s3ForcePathStyle: boolean;
  s3Region: string | undefined;
  /** Every repository the config file names (`repositories:`), in its order; empty without that key. */
  repositories: RepositorySettings[];
  /**
   * The repository --repo / PGDR_REPO / `repo:` names (a configured name, or a URL); without `repositories:`, the
   * one repository of the settings above. Undefined when several are configured and none is named.
   */
  repository: RepositorySettings | undefined;
  cluster: string;
  pgHost: string | undefined;
  pgPort: number | undefined;
  pgUser: string | undefined;
  patroni: string[];
  etcd: string[];
  /** Patroni scope and DCS namespace, for reading the cluster from etcd directly. */
  scope: string | undefined;
  namespace: string;
  pgdata: string | undefined;
  policy: string | undefined;
  /** Where `wal push` keeps its look-ahead markers; see src/wal/spool.ts. */
  spoolDir: string;
  /** zstd level for base backups and WAL. */
  compressLevel: number;
  /** zstd worker threads for base backups. */
  compressThreads: number;
  /** WAL files `wal push` may archive ahead of PostgreSQL's request, in parallel. */
  archiveLookahead: number;
  /** Whether to draw progress bars on a TTY. */
  progress: boolean;
  /**
   * Use a repository lock on a store that ignores conditional writes, knowing it is not exclusive there (only when
   * one pgdr ever writes to the repository). Without it such a store needs etcd for locks, or lock-taking commands refuse.
   */
  acceptUnconditionalWrites: boolean;
  /** How old the store's conditional-write probe may get before pgdr asks the store again. */
  storeProbeIntervalMs: number;
  /** An S3 request fails after this long without a byte moving (a store that hangs), then is retried. */
  s3TimeoutMs: number;
  /** Tries per S3 request, the first included. */
  s3Attempts: number;
  /** How `backup now` reads the data: the files engine where it can (auto), or always one of the two. */
  engine: 'auto' | 'files' | 'basebackup';
  /** Workers for the files engine and for restore (files read, objects unpacked at once). */
  jobs: number;
  /** Write never-changing objects under S3 Object Lock retention (src/repo/object-lock.ts); undefined: off. */
  objectLock: ObjectLockSettings | undefined;
  /** age public keys (age1…): every new object is encrypted to all of them; empty: nothing is encrypted. */
  encryptRecipients: string[];
  /** An age identity file (private keys): what restore, drill, `wal fetch` and `verify --full` decrypt with. */
  identityFile: string | undefined;
}

export interface SettingFlags {
  config?: string;
  repo?: string;
  s3Endpoint?: string;
  s3ForcePathStyle?: boolean;
  cluster?: string;
  pgHost?: string;
  pgPort?: string;
  pgUser?: string;
  patroni?: string;
  etcd?: string;
  scope?: string;
  namespace?: string;
  pgdata?: string;
  policy?: string;
  spoolDir?: string;
  compressLevel?: string;
  progress?: boolean;
  acceptUnconditionalWrites?: boolean;
  engine?: string;
  jobs?: string;
  objectLockMode?: string;
  objectLockMargin?: string;
  /** `--encrypt-recipient KEY`, repeatable. */
  encryptRecipient?: string[];
  identityFile?: string;
}

function list(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const items = Array.isArray(value) ? value : value.split(',');
  return items.map((s) => s.trim()).filter((s) => s.length > 0);
}

function intSetting(name: string, value: string | number | undefined, min: number, max: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`, `fix ${name}`);
  }
  return n;
}

function engineSetting(value: string | undefined): Settings['engine'] {
  if (value === undefined) return 'auto';
  if (value === 'auto' || value === 'files' || value === 'basebackup') return value;
  throw new UsageError(`--engine must be auto, files or basebackup, got ${JSON.stringify(value)}`, 'files reads the data directory on the server\'s host; basebackup streams it from the server over a replication connection');
}

/** An age X25519 recipient: "age1" and 58 characters of lower-case bech32. */
const AGE_RECIPIENT = /^age1[02-9ac-hj-np-z]{58}$/;

/**
 * The recipients every new object is encrypted to. Public keys only: a private key (AGE-SECRET-KEY-…) given here by
 * mistake is refused without being echoed, since the message may end up in a log.
 */
export function recipientsSetting(value: string | string[] | undefined, source: string): string[] {
  const recipients = [...new Set(list(value))];
  for (const recipient of recipients) {
    if (/^AGE-SECRET-KEY-/i.test(recipient)) {
      throw new UsageError(`${source} holds an age private key, not a recipient`, 'give the public key (age-keygen -y KEYFILE prints it); keep the private key off this host');
    }
    if (!AGE_RECIPIENT.test(recipient)) {
      throw new UsageError(`${source}: ${JSON.stringify(recipient.slice(0, 80))} is not an age X25519 recipient`, 'recipients look like age1… (62 characters); age-keygen -y KEYFILE prints one');
    }
  }
  return recipients;
}

/**
 * A passphrase opens a passphrase-protected identity file (src/stream/age-passphrase.ts) and nothing else: pgdr
 * never encrypts to a passphrase. Given without an identity file it is refused rather than ignored, so that nobody
 * believes their backups are encrypted with it.
 */
function passphraseNeedsIdentity(env: NodeJS.ProcessEnv, identityFile: string | undefined): void {
  const name = env.PGDR_PASSPHRASE ? 'PGDR_PASSPHRASE' : env.PGDR_PASSPHRASE_FILE ? 'PGDR_PASSPHRASE_FILE' : undefined;
  if (name === undefined || identityFile !== undefined) return;
  throw new UsageError(
    `${name} is set, but no identity file is: the passphrase only opens a passphrase-protected identity file`,
    'set PGDR_IDENTITY_FILE to the identity protected with age -p (new objects are encrypted to recipients, never to a passphrase; docs/runbooks/key-management.md)',
  );
}

function boolEnv(value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new UsageError(`boolean environment value ${JSON.stringify(value)} is not understood`, 'use 1 or 0');
}

/** Object Lock mode and margin; `off` (the default) writes no retention. */
function objectLockSetting(mode: string | undefined, margin: string | undefined): ObjectLockSettings | undefined {
  const normalized = mode?.trim().toLowerCase();
  if (normalized === undefined || normalized === '' || normalized === 'off') return undefined;
  if (normalized !== 'governance' && normalized !== 'compliance') {
    throw new UsageError(
      `--object-lock-mode must be governance, compliance or off, got ${JSON.stringify(mode)}`,
      'governance: a user with s3:BypassGovernanceRetention can still delete; compliance: no one can until the date passes',
    );
  }
  return { mode: normalized, marginMs: parseDuration(margin || '7d', 'objectLockMargin') };
}

/** The config file named by --config or PGDR_CONFIG, if any. */
export function configFilePath(flags: SettingFlags, env: NodeJS.ProcessEnv): string | undefined {
  return flags.config ?? (env.PGDR_CONFIG || undefined);
}

/** Every setting from flags, environment and an already loaded config file (src/config/settings.ts loads it). */
export function resolveSettingsFrom(flags: SettingFlags, env: NodeJS.ProcessEnv, home: string, file: ConfigFile): Settings {
  const stateHome = env.XDG_STATE_HOME ?? join(home, '.local', 'state');
  const cluster = flags.cluster ?? env.PGDR_CLUSTER ?? file.cluster ?? 'default';
  const selection = flags.repo ?? (env.PGDR_REPO || undefined) ?? file.repo;
  // A repository given by URL takes the global S3 settings and the AWS SDK's default credentials, as always.
  const adHoc = (url: string): RepositorySettings => ({
    name: undefined,
    url,
    s3Endpoint: flags.s3Endpoint ?? env.PGDR_S3_ENDPOINT ?? file.s3Endpoint,
    s3Region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? file.s3Region,
    s3ForcePathStyle: flags.s3ForcePathStyle ?? boolEnv(env.PGDR_S3_FORCE_PATH_STYLE) ?? file.s3ForcePathStyle ?? false,
    credentials: undefined,
    encryptRecipients: [],
    receives: [...REPOSITORY_CONTENTS],
  });
  const repositories = configuredRepositories(file);
  const repository =
    repositories.length === 0 && selection === undefined
      ? adHoc(`file://${join(home, '.local', 'share', 'pgdr', 'repo')}`)
      : selection === undefined
        ? undefined
        : selectRepository(selection, repositories, adHoc);
  const shown = repository ?? repositories[0]!;
  const settings: Settings = {
    repo: shown.url,
    s3Endpoint: shown.s3Endpoint,
    s3ForcePathStyle: shown.s3ForcePathStyle,
    s3Region: shown.s3Region,
    repositories,
    repository,
    cluster,
    pgHost: flags.pgHost ?? env.PGHOST ?? file.pgHost,
    pgPort: intSetting('--pg-port', flags.pgPort ?? env.PGPORT ?? file.pgPort, 1, 65535),
    pgUser: flags.pgUser ?? env.PGUSER ?? file.pgUser,
    patroni: list(flags.patroni ?? env.PGDR_PATRONI ?? file.patroni),
    etcd: list(flags.etcd ?? env.PGDR_ETCD ?? file.etcd),
    scope: flags.scope ?? (env.PGDR_SCOPE || undefined) ?? file.scope,
    namespace: flags.namespace ?? (env.PGDR_NAMESPACE || undefined) ?? file.namespace ?? '/service',
    pgdata: flags.pgdata ?? env.PGDATA ?? file.pgdata,
    policy: flags.policy ?? env.PGDR_POLICY ?? file.policy,
    spoolDir: flags.spoolDir ?? env.PGDR_SPOOL_DIR ?? file.spoolDir ?? join(stateHome, 'pgdr', 'spool'),
    compressLevel: intSetting('--compress-level', flags.compressLevel ?? env.PGDR_COMPRESS_LEVEL ?? file.compressLevel, -7, 22) ?? 3,
    compressThreads: intSetting('compressThreads', env.PGDR_COMPRESS_THREADS ?? file.compressThreads, 0, 64) ?? 2,
    archiveLookahead: intSetting('archiveLookahead', env.PGDR_ARCHIVE_LOOKAHEAD ?? file.archiveLookahead, 0, 64) ?? 8,
    progress: flags.progress ?? true,
    acceptUnconditionalWrites: flags.acceptUnconditionalWrites ?? boolEnv(env.PGDR_ACCEPT_UNCONDITIONAL_WRITES) ?? file.acceptUnconditionalWrites ?? false,
    storeProbeIntervalMs: parseDuration(env.PGDR_STORE_PROBE_INTERVAL || file.storeProbeInterval || '24h', 'storeProbeInterval'),
    s3TimeoutMs: parseDuration(env.PGDR_S3_TIMEOUT || file.s3Timeout || '60s', 's3Timeout'),
    s3Attempts: intSetting('s3Attempts', env.PGDR_S3_ATTEMPTS ?? file.s3Attempts, 1, 20) ?? 5,
    engine: engineSetting(flags.engine ?? (env.PGDR_ENGINE || undefined) ?? file.engine),
    jobs: intSetting('--jobs', flags.jobs ?? (env.PGDR_JOBS || undefined) ?? file.jobs, 1, 64) ?? Math.min(availableParallelism(), 16),
    objectLock: objectLockSetting(
      flags.objectLockMode ?? (env.PGDR_OBJECT_LOCK_MODE || undefined) ?? file.objectLockMode,
      flags.objectLockMargin ?? (env.PGDR_OBJECT_LOCK_MARGIN || undefined) ?? file.objectLockMargin,
    ),
    encryptRecipients:
      flags.encryptRecipient !== undefined && flags.encryptRecipient.length > 0
        ? recipientsSetting(flags.encryptRecipient, '--encrypt-recipient')
        : env.PGDR_ENCRYPT_RECIPIENTS
          ? recipientsSetting(env.PGDR_ENCRYPT_RECIPIENTS, 'PGDR_ENCRYPT_RECIPIENTS')
          : recipientsSetting(file.encryptRecipients, 'encryptRecipients in the config file'),
    identityFile: flags.identityFile ?? (env.PGDR_IDENTITY_FILE || undefined) ?? file.identityFile,
  };
  passphraseNeedsIdentity(env, settings.identityFile);
  for (const r of [...repositories, ...(repository === undefined ? [] : [repository])]) {
    if (!/^(s3|file):\/\//.test(r.url)) {
      throw new UsageError(
        `repository URL ${JSON.stringify(r.url)}${r.name === undefined ? '' : ` (repository ${r.name})`} has no supported scheme`,
        'use s3://bucket/prefix or file:///absolute/path',
      );
    }
  }
  for (const r of [...repositories, ...(repository === undefined || repository.name !== undefined ? [] : [repository])]) {
    const lock = objectLockFor(r, settings.objectLock);
    if (lock === undefined || r.url.startsWith('s3://')) continue;
    throw new UsageError(
      `Object Lock (${lock.mode}) is set, but the repository ${r.name === undefined ? '' : `${r.name} `}${r.url.startsWith('file://') ? 'is a local directory' : 'is not on S3'}`,
      'Object Lock is an S3 bucket feature: use an s3:// repository on a bucket created with Object Lock, or set objectLockMode: off for it (or unset PGDR_OBJECT_LOCK_MODE / objectLockMode)',
    );
  }
  return settings;
}

/**
 * The config file's `repositories:` (already checked against the schema): each entry stands alone, so the global
 * S3 settings (--s3-endpoint, PGDR_S3_*, AWS_REGION) apply only to a repository given by URL.
 */
function configuredRepositories(file: ConfigFile): RepositorySettings[] {
  const entries = file.repositories ?? [];
  const seen = new Set<string>();
  return entries.map((entry) => {
    if (seen.has(entry.name)) {
      throw new UsageError(`config file: repositories: the name ${JSON.stringify(entry.name)} is used twice`, 'give each repository its own name');
    }
    seen.add(entry.name);
    return {
      name: entry.name,
      url: entry.url,
      s3Endpoint: entry.s3Endpoint,
      s3Region: entry.s3Region,
      s3ForcePathStyle: entry.s3ForcePathStyle ?? false,
      credentials: entry.credentials === undefined ? undefined : { file: entry.credentials.file, profile: entry.credentials.profile },
      encryptRecipients: recipientsSetting(entry.encryptRecipients, `repository ${entry.name}: encryptRecipients`),
      receives: entry.receives ?? [...REPOSITORY_CONTENTS],
      ...repositoryObjectLock(entry),
    };
  });
}

/** A repository's own Object Lock (objectLockMode, with objectLockMargin beside it), if it names one. */
function repositoryObjectLock(entry: NonNullable<ConfigFile['repositories']>[number]): Pick<RepositorySettings, 'objectLock'> {
  if (entry.objectLockMode === undefined) {
    if (entry.objectLockMargin === undefined) return {};
    throw new UsageError(`repository ${entry.name}: objectLockMargin is set without objectLockMode`, 'set objectLockMode (governance, compliance or off) beside it');
  }
  return { objectLock: objectLockSetting(entry.objectLockMode, entry.objectLockMargin) ?? null };
}

/**
 * The settings of a command that runs once per WAL file: YAML and the config schema cost tens of milliseconds to
 * load, so they are loaded only when a config file is named.
 */
export async function loadSettings(flags: SettingFlags, env: NodeJS.ProcessEnv = process.env): Promise<Settings> {
  if (configFilePath(flags, env) === undefined) return resolveSettingsFrom(flags, env, env.HOME ?? homedir(), {});
  const { resolveSettings } = await import('./settings.js');
  return resolveSettings(flags, env);
}
