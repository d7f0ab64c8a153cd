import { resolve } from 'node:path';
import type { Command } from 'commander';
import { repositoriesToVisit, repositoryFor, type RepositoryContent, type RepositorySettings } from '../config/repositories.js';
import { configFilePath } from '../config/resolve-settings.js';
import { resolveSettings, type SettingFlags, type Settings } from '../config/settings.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { PgEndpoint } from '../postgres/connection.js';
import { shellQuote } from '../postgres/recovery-config.js';
import { acquireLock, type Locker } from '../repo/lock.js';
import { chooseLockKeeper } from '../repo/lock-policy.js';
import { conditionalWriteSupport, unsafeStoreError, type StoreProbeRecord } from '../repo/store-probe.js';
import { pgdrExecutable } from './executable.js';
import { openRepositoryAt, settingsFor, storeIdentity } from './repository.js';

export { pgdrExecutable } from './executable.js';

/** What every command handler gets: resolved settings, output helpers, and lazily opened effects. */
export interface CommandContext {
  /** The resolved settings; once a repository is opened, narrowed to it (its URL, endpoint and name). */
  readonly settings: Settings;
  /** The command as typed, e.g. "backup now": for messages. */
  readonly command: string;
  json: boolean;
  debug: boolean;
  log(message: string): void;
  /** Prints the result: one JSON document with --json, else the human text. */
  emit(result: unknown, human: string): void;
  /** Whether emit() has printed the command's document. */
  readonly emitted: boolean;
  /**
   * The repository this command works with (src/config/repositories.ts): the one --repo names, else the only one
   * that receives `content` (backups when not said), refusing to guess among several. Opened once.
   */
  openRepository(content?: RepositoryContent): { store: ObjectStore; layout: RepositoryLayout };
  /** The repositories a command that goes over each in turn works with (one when --repo names it). */
  repositoriesToVisit(): RepositorySettings[];
  /** This context narrowed to one repository (its own openRepository, locks and probe). */
  forRepository(repository: RepositorySettings): CommandContext;
  /**
   * Takes the cluster's named locks where they are exclusive: in the repository when its store honours conditional
   * writes (asked once per probe interval), in etcd when it does not; refuses otherwise (src/repo/lock-policy.ts).
   */
  locker(): Locker;
  /** What the store does with conditional writes (the recorded probe, probed again when stale). */
  storeProbe(cacheFile?: string): Promise<StoreProbeRecord>;
  pgEndpoint(): PgEndpoint;
}

export interface CommonOptions extends SettingFlags {
  json?: boolean;
  debug?: boolean;
}

/** Flags every command accepts (../shared/CLI.md): added to each leaf command so they may follow the command name. */
export function addCommonOptions(command: Command): Command {
  return command
    .option('--config <file>', 'YAML config file (flags > environment > config file > defaults)')
    .option('--json', 'print one JSON document on stdout; logs go to stderr')
    .option('--debug', 'print stack traces with errors')
    .option('--repo <name|url>', 'repository: a name from the config file\'s repositories:, or s3://bucket/prefix or file:///abs/path (env PGDR_REPO)')
    .option('--s3-endpoint <url>', 'S3-compatible endpoint, e.g. MinIO, R2, B2 (env PGDR_S3_ENDPOINT)')
    .option('--s3-force-path-style', 'path-style S3 addressing, needed by MinIO (env PGDR_S3_FORCE_PATH_STYLE=1)')
    .option('--cluster <name>', 'namespace inside the repository (env PGDR_CLUSTER, default "default")')
    .option('--pg-host <host>', 'PostgreSQL host (env PGHOST)')
    .option('--pg-port <port>', 'PostgreSQL port (env PGPORT)')
    .option('--pg-user <user>', 'PostgreSQL user (env PGUSER; password only from PGPASSWORD, PGPASSFILE or ~/.pgpass)')
    .option('--patroni <urls>', 'Patroni REST endpoints, comma-separated (env PGDR_PATRONI)')
    .option('--etcd <urls>', 'etcd endpoints, comma-separated (env PGDR_ETCD)')
    .option('--pgdata <dir>', 'PostgreSQL data directory (env PGDATA)')
    .option('--policy <file>', 'retention policy YAML (env PGDR_POLICY)')
    .option('--spool-dir <dir>', 'where wal push keeps look-ahead markers (env PGDR_SPOOL_DIR)')
    .option('--compress-level <n>', 'zstd level for backups and WAL (default 3)')
    .option(
      '--accept-unconditional-writes',
      'on a store that ignores If-None-Match and with no etcd configured, use repository locks anyway (env PGDR_ACCEPT_UNCONDITIONAL_WRITES=1)',
    )
    .option('--object-lock-mode <mode>', 'governance, compliance or off: write what never changes under S3 Object Lock retention (env PGDR_OBJECT_LOCK_MODE)')
    .option('--object-lock-margin <duration>', 'added to every retain-until date, e.g. 7d (env PGDR_OBJECT_LOCK_MARGIN)')
    .option(
      '--encrypt-recipient <key>',
      'age public key (age1…) to encrypt every new object to; repeatable (env PGDR_ENCRYPT_RECIPIENTS, comma-separated)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option('--identity-file <file>', 'age identity file (private key) to decrypt with: restore, drill, wal fetch, etcd restore; optional for verify, drill list, wal push (env PGDR_IDENTITY_FILE; one protected with age -p opens with PGDR_PASSPHRASE_FILE)')
    .option('--no-progress', 'never draw progress bars');
}

export function createContext(options: CommonOptions, command = 'pgdr'): CommandContext {
  return contextFor(resolveSettings(options), options, command, { emitted: false });
}

function contextFor(resolved: Settings, options: CommonOptions, command: string, output: { emitted: boolean }): CommandContext {
  let settings = resolved;
  const json = options.json === true;
  let repository: { store: ObjectStore; layout: RepositoryLayout } | undefined;
  return {
    get emitted() {
      return output.emitted;
    },
    get settings() {
      return settings;
    },
    command,
    json,
    debug: options.debug === true,
    log(message) {
      process.stderr.write(`pgdr: ${message}\n`);
    },
    emit(result, human) {
      output.emitted = true;
      if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else if (human) process.stdout.write(human.endsWith('\n') ? human : `${human}\n`);
    },
    openRepository(content = 'backups') {
      if (repository === undefined) {
        const chosen = repositoryFor(settings, content, `pgdr ${command}`);
        settings = settingsFor(settings, chosen);
        repository = openRepositoryAt(chosen, settings);
      }
      return repository;
    },
    repositoriesToVisit() {
      return repositoriesToVisit(settings);
    },
    forRepository(chosen) {
      // From the settings as resolved, not as narrowed to a repository opened before: its own recipients and Object Lock are not the next one's.
      return contextFor(settingsFor(resolved, chosen), options, command, output);
    },
    locker() {
      return async (name, purpose, options) => {
        const { store, layout } = this.openRepository();
        const probe = await this.storeProbe();
        const keeper = chooseLockKeeper(probe, { etcdConfigured: settings.etcd.length > 0, acceptRisk: settings.acceptUnconditionalWrites });
        switch (keeper.kind) {
          case 'repository':
            return acquireLock(store, layout, name, purpose, options);
          case 'repository-at-risk':
            this.log(keeper.warning);
            return acquireLock(store, layout, name, purpose, options);
          case 'etcd': {
            this.log(keeper.note);
            // etcd's gRPC client loads only when a lock needs it.
            const [{ acquireEtcdLock }, { resolveEtcdConnection }] = await Promise.all([import('../etcd/lock.js'), import('../etcd/connection.js')]);
            return acquireEtcdLock(resolveEtcdConnection(settings.etcd), { location: store.location, cluster: layout.cluster }, name, purpose, options);
          }
          case 'refuse':
            throw unsafeStoreError(probe, `two pgdr processes could both take the ${name} lock (${purpose}) and write the same keys`);
        }
      };
    },
    async storeProbe(cacheFile) {
      const { store, layout } = this.openRepository();
      return conditionalWriteSupport(store, layout, {
        identity: storeIdentity(store, settings),
        intervalMs: settings.storeProbeIntervalMs,
        log: (m) => this.log(m),
        ...(cacheFile === undefined ? {} : { cacheFile }),
      });
    },
    pgEndpoint() {
      return { host: settings.pgHost, port: settings.pgPort, user: settings.pgUser };
    },
  };
}

/**
 * The restore_command for a restored server: this node, this pgdr, the same repository settings. Credentials are
 * not in it: the server inherits them from the environment (or AWS profile files) of whoever starts it.
 */
export function buildRestoreCommand(settings: Settings, configFile: string | undefined): string {
  const words = [process.execPath, pgdrExecutable(), 'wal', 'fetch', '%f', '%p', '--abort-recovery-on-error'];
  const repository = settings.repository;
  if (repository?.name !== undefined) {
    // A configured repository: the server's wal fetch reads the same config file, asks this repository first and
    // falls back to the others it names for a file this one lacks.
    words.push('--repo', repository.name);
  } else {
    words.push('--repo', settings.repo);
    if (settings.s3Endpoint) words.push('--s3-endpoint', settings.s3Endpoint);
    if (settings.s3ForcePathStyle) words.push('--s3-force-path-style');
  }
  words.push('--cluster', settings.cluster);
  const config = configFile ?? configFilePath({}, process.env);
  if (config) words.push('--config', resolve(config));
  // A path, never the key: the server's restore_command decrypts each WAL file with the same identity file.
  if (settings.identityFile) words.push('--identity-file', resolve(settings.identityFile));
  return words.map((w) => (w === '%f' || w === '%p' ? w : shellQuote(w))).join(' ');
}
