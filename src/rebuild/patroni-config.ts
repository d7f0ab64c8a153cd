import { isAbsolute } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { UsageError } from '../errors.js';

/**
 * The parts of a member's Patroni configuration that a full-cluster rebuild needs, read from the YAML files the
 * operator already has (the ones Patroni ran with). Pure: text in, a validated record out, so that every check
 * (a missing data_dir, scopes that disagree) is a unit-tested one-line error instead of a surprise at start-up.
 */
export interface PatroniMemberConfig {
  /** The file it came from, for messages. */
  path: string;
  name: string;
  scope: string;
  /** Normalised like Patroni builds its keys: "/service". */
  namespace: string;
  /** Absolute. */
  dataDir: string;
  /** Patroni's REST API as a client reaches it, e.g. http://10.0.0.1:8008. */
  restApiUrl: string;
  /** Where PostgreSQL listens for clients (postgresql.connect_address), for messages. */
  pgAddress: string | null;
  /** The etcd client URLs this member's Patroni uses (etcd3: or etcd: section). */
  etcdHosts: string[];
  /** Whether archive_command is set in the member's parameters or the bootstrap DCS parameters. */
  archives: boolean;
  /** Whether postgresql.recovery_conf.restore_command is set. */
  hasRestoreCommand: boolean;
  /** The whole document, for deriving the rebuild configuration. */
  raw: Record<string, unknown>;
}

const HostList = z.union([z.string(), z.array(z.string())]);

const DcsSchema = z.looseObject({
  host: z.string().optional(),
  hosts: HostList.optional(),
  url: z.string().optional(),
  urls: HostList.optional(),
  protocol: z.enum(['http', 'https']).optional(),
});

const PatroniFileSchema = z.looseObject({
  scope: z.string().min(1),
  namespace: z.string().optional(),
  name: z.string().min(1),
  restapi: z.looseObject({
    listen: z.string().optional(),
    connect_address: z.string().optional(),
    certfile: z.string().optional(),
  }),
  etcd3: DcsSchema.optional(),
  etcd: DcsSchema.optional(),
  bootstrap: z.looseObject({ dcs: z.looseObject({ postgresql: z.looseObject({ parameters: z.record(z.string(), z.unknown()).optional() }).optional() }).optional() }).optional(),
  postgresql: z.looseObject({
    data_dir: z.string().min(1),
    connect_address: z.string().optional(),
    listen: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    recovery_conf: z.record(z.string(), z.unknown()).optional(),
  }),
});

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function parsePatroniConfig(text: string, path: string): PatroniMemberConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new UsageError(`Patroni config ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`, 'pass the YAML file each member\'s Patroni runs with');
  }
  const parsed = PatroniFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(
      `Patroni config ${path}: ${issue?.path.join('.') || '(top level)'}: ${issue?.message ?? 'invalid'}`,
      'a member\'s config needs scope, name, restapi.connect_address (or listen), postgresql.data_dir and an etcd3: section',
    );
  }
  const doc = parsed.data;
  for (const [what, value] of [['scope', doc.scope], ['name', doc.name]] as const) {
    if (!NAME.test(value)) throw new UsageError(`Patroni config ${path}: ${what} ${JSON.stringify(value)} is not a plain name`, 'use letters, digits, dot, dash and underscore');
  }
  if (!isAbsolute(doc.postgresql.data_dir)) {
    throw new UsageError(`Patroni config ${path}: postgresql.data_dir ${JSON.stringify(doc.postgresql.data_dir)} is not absolute`, 'give the absolute data directory, as Patroni needs it anyway');
  }
  const dcs = doc.etcd3 ?? doc.etcd;
  if (dcs === undefined) {
    throw new UsageError(`Patroni config ${path} has no etcd3: (or etcd:) section`, 'pgdr rebuilds clusters whose DCS is etcd; add the etcd3: section with hosts');
  }
  const etcdHosts = dcsHosts(dcs, path);
  const restAddress = doc.restapi.connect_address ?? doc.restapi.listen;
  if (restAddress === undefined) {
    throw new UsageError(`Patroni config ${path} has no restapi.connect_address or restapi.listen`, 'pgdr watches the rebuild through the REST API; set restapi.connect_address');
  }
  const restApiUrl = `${doc.restapi.certfile ? 'https' : 'http'}://${hostPort(restAddress, path, 'restapi.connect_address').replace(/^0\.0\.0\.0:/, '127.0.0.1:')}`;
  const parameters = { ...(doc.bootstrap?.dcs?.postgresql?.parameters ?? {}), ...(doc.postgresql.parameters ?? {}) };
  return {
    path,
    name: doc.name,
    scope: doc.scope,
    namespace: normaliseNamespace(doc.namespace ?? '/service/', path),
    dataDir: doc.postgresql.data_dir.replace(/\/+$/, ''),
    restApiUrl,
    pgAddress: doc.postgresql.connect_address ?? doc.postgresql.listen ?? null,
    etcdHosts,
    archives: typeof parameters.archive_command === 'string' && parameters.archive_command.trim() !== '',
    hasRestoreCommand: typeof doc.postgresql.recovery_conf?.restore_command === 'string',
    raw: raw as Record<string, unknown>,
  };
}

function normaliseNamespace(text: string, path: string): string {
  const trimmed = text.trim().replace(/^\/+|\/+$/g, '');
  if (trimmed === '' || /\s/.test(trimmed)) throw new UsageError(`Patroni config ${path}: namespace ${JSON.stringify(text)} is not valid`, "Patroni's default is /service/");
  return `/${trimmed}`;
}

function hostPort(text: string, path: string, field: string): string {
  const value = text.trim().replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '');
  if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(value)) {
    throw new UsageError(`Patroni config ${path}: ${field} ${JSON.stringify(text)} is not host:port`, 'e.g. 10.0.0.1:8008');
  }
  return value;
}

/** Patroni accepts host, hosts (a list or a comma-separated string), url and urls: all become client URLs. */
function dcsHosts(dcs: z.infer<typeof DcsSchema>, path: string): string[] {
  const protocol = dcs.protocol ?? 'http';
  const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter((s) => s !== ''));
  const urls = [...list(dcs.url), ...list(dcs.urls)].map((u) => `${/^https?:\/\//.test(u) ? '' : `${protocol}://`}${u}`.replace(/\/+$/, ''));
  const hosts = [...list(dcs.host), ...list(dcs.hosts)].map((h) => `${protocol}://${hostPort(h, path, 'etcd3.hosts')}`);
  const all = [...new Set([...urls, ...hosts])];
  if (all.length === 0) throw new UsageError(`Patroni config ${path}: the etcd3: section names no hosts`, 'list the etcd client addresses under etcd3.hosts');
  return all;
}

/** What the rebuild puts into each member's derived configuration. */
export interface RebuildConfigChanges {
  /** bootstrap.pgdr.command: `pgdr patroni bootstrap ... <target> --backup-id ID`. */
  bootstrapCommand: string;
  /** postgresql.pgdr.command for create_replica_methods; null: replicas clone from the leader (basebackup) only. */
  replicaCommand: string | null;
  /** postgresql.recovery_conf.restore_command when the member has none. */
  restoreCommand: string;
  /** etcd client URLs the rebuilt cluster's Patroni must use, when they differ from the member's own. */
  etcdHosts: string[] | null;
}

/**
 * The member's configuration for the rebuild: the operator's own, with the custom bootstrap (Patroni only runs it
 * for the member that finds the scope uninitialised, i.e. the first one started), replicas created from the
 * repository, and restore_command so that replicas replay the archive up to the new leader's timeline. Pure.
 */
export function deriveRebuildConfig(member: PatroniMemberConfig, changes: RebuildConfigChanges): Record<string, unknown> {
  const doc = structuredClone(member.raw);
  const bootstrap = { ...asRecord(doc.bootstrap) };
  bootstrap.method = 'pgdr';
  // keep_existing_recovery_conf: Patroni keeps pgdr's recovery_target_* and recovery.signal, waits for the promotion.
  bootstrap.pgdr = { command: changes.bootstrapCommand, keep_existing_recovery_conf: true };
  doc.bootstrap = bootstrap;

  const postgresql = { ...asRecord(doc.postgresql) };
  if (changes.replicaCommand !== null) {
    postgresql.create_replica_methods = ['pgdr', 'basebackup'];
    // no_leader: the repository serves even before the leader is up; basebackup is the fallback.
    postgresql.pgdr = { command: changes.replicaCommand, no_leader: true };
  } else {
    postgresql.create_replica_methods = ['basebackup'];
  }
  if (!member.hasRestoreCommand) {
    postgresql.recovery_conf = { ...asRecord(postgresql.recovery_conf), restore_command: changes.restoreCommand };
  }
  doc.postgresql = postgresql;

  if (changes.etcdHosts !== null) {
    const https = changes.etcdHosts.some((h) => h.startsWith('https:'));
    const previous = asRecord(doc.etcd3 ?? doc.etcd);
    delete doc.etcd;
    delete previous.host;
    delete previous.url;
    delete previous.urls;
    doc.etcd3 = { ...previous, hosts: changes.etcdHosts.map((h) => h.replace(/^https?:\/\//, '')), protocol: https ? 'https' : 'http' };
  }
  return doc;
}

function asRecord(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : {};
}
