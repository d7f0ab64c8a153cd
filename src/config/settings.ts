import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { UsageError } from '../errors.js';
import { isRepositoryName } from './repositories.js';
import { configFilePath, resolveSettingsFrom, type Settings, type SettingFlags } from './resolve-settings.js';

export type { Settings, SettingFlags } from './resolve-settings.js';

/** One entry of `repositories:` (docs/configuration.md#several-repositories). */
const RepositoryEntrySchema = z
  .object({
    name: z.string().refine(isRepositoryName, 'a repository name is letters, digits, ".", "_" and "-", starting with a letter'),
    url: z.string().regex(/^(s3|file):\/\//, 'a repository URL is s3://bucket/prefix or file:///absolute/path'),
    s3Endpoint: z.string().optional(),
    s3Region: z.string().optional(),
    s3ForcePathStyle: z.boolean().optional(),
    credentials: z
      .object({
        /** An AWS shared credentials file: never the keys themselves, which would then sit in the config file. */
        file: z.string().startsWith('/', 'the credentials file must be an absolute path').optional(),
        profile: z.string().regex(/^[A-Za-z0-9._@+-]+$/, 'a profile name is letters, digits and . _ @ + -').optional(),
      })
      .strict()
      .refine((c) => c.file !== undefined || c.profile !== undefined, 'credentials: name a file, a profile or both')
      .optional(),
    encryptRecipients: z.union([z.string(), z.array(z.string())]).optional(),
    objectLockMode: z.enum(['governance', 'compliance', 'off']).optional(),
    objectLockMargin: z.string().optional(),
    receives: z
      .array(z.enum(['wal', 'backups', 'etcd']))
      .refine((r) => new Set(r).size === r.length, 'receives: each of wal, backups, etcd at most once')
      .optional(),
  })
  .strict();

/** The config file: the same names as the flags, in camelCase. */
const ConfigFileSchema = z
  .object({
    repo: z.string(),
    repositories: z.array(RepositoryEntrySchema).min(1),
    s3Endpoint: z.string(),
    s3ForcePathStyle: z.boolean(),
    s3Region: z.string(),
    cluster: z.string(),
    pgHost: z.string(),
    pgPort: z.number().int().min(1).max(65535),
    pgUser: z.string(),
    patroni: z.union([z.string(), z.array(z.string())]),
    etcd: z.union([z.string(), z.array(z.string())]),
    scope: z.string(),
    namespace: z.string(),
    pgdata: z.string(),
    policy: z.string(),
    spoolDir: z.string(),
    compressLevel: z.number().int().min(-7).max(22),
    compressThreads: z.number().int().min(0).max(64),
    archiveLookahead: z.number().int().min(0).max(64),
    acceptUnconditionalWrites: z.boolean(),
    storeProbeInterval: z.string(),
    s3Timeout: z.string(),
    s3Attempts: z.number().int().min(1).max(20),
    engine: z.enum(['auto', 'files', 'basebackup']),
    jobs: z.number().int().min(1).max(64),
    objectLockMode: z.enum(['governance', 'compliance', 'off']),
    objectLockMargin: z.string(),
    encryptRecipients: z.union([z.string(), z.array(z.string())]),
    identityFile: z.string(),
  })
  .partial()
  .strict();
export type ConfigFile = z.infer<typeof ConfigFileSchema>;

export function loadConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read config file ${path}: ${(err as Error).message}`, 'check the --config path', err);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (err) {
    throw new UsageError(`config file ${path} is not valid YAML: ${(err as Error).message}`, 'fix the YAML syntax', err);
  }
  const result = ConfigFileSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    throw new UsageError(
      `config file ${path}: ${where}: ${issue?.message ?? 'invalid'}`,
      'see docs/configuration.md for the accepted keys and types',
    );
  }
  return result.data;
}

/**
 * Every setting, resolved once: flags > environment > config file > defaults (../shared/CLI.md). Credentials never
 * pass through here: the S3 driver takes them from the AWS SDK's default chain.
 */
export function resolveSettings(flags: SettingFlags, env: NodeJS.ProcessEnv = process.env, home: string = env.HOME ?? homedir()): Settings {
  const configPath = configFilePath(flags, env);
  return resolveSettingsFrom(flags, env, home, configPath ? loadConfigFile(configPath) : {});
}
