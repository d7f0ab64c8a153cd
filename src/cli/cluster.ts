import { Option, type Command } from 'commander';
import { ServiceError, UsageError, errorMessage } from '../errors.js';
import {
  clusterReaders,
  finishLeaderWalSegment,
  hasClusterSources,
  readClusterOnce,
  resolveBackupSource,
  waitForDecision,
  type ClusterSourceSettings,
  type EndpointReport,
} from '../cluster/discover.js';
import type { ClusterMember, ClusterView } from '../cluster/members.js';
import { chooseLeader, chooseReplica, type BackupFrom, type SourceChoice } from '../cluster/select.js';
import type { PgEndpoint } from '../postgres/connection.js';
import { parseRecoveryTarget, type RecoveryTarget } from '../postgres/recovery-target.js';
import { formatBytes } from '../stream/progress.js';
import { addCommonOptions, type CommandContext } from './context.js';
import { secondsFlag } from './flag-values.js';
import type { Action } from './action.js';
import { restoreInto } from './restore-into.js';
import { parseTablespaceMappings } from '../restore/tablespaces.js';

/**
 * `pgdr cluster status` (who leads, who follows, which member a backup would read from) and the adapters Patroni
 * calls: `pgdr patroni create-replica` (create_replica_methods) and `pgdr patroni bootstrap` (bootstrap.method).
 * Also the options and the source resolution that `pgdr backup now` uses to follow the leader.
 */

/** Options of every command that finds its member through Patroni or etcd. */
export interface ClusterFlags {
  scope?: string;
  namespace?: string;
  leaderWait?: string;
  maxLag?: string;
  from?: string;
}

const REQUEST_TIMEOUT_MS = 5_000;

/** Commander's accumulator for a repeatable option. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function addClusterSourceOptions(command: Command, defaults: { leaderWait: string }): Command {
  return command
    .option('--scope <name>', "Patroni scope, needed to read etcd directly when it holds several clusters (env PGDR_SCOPE)")
    .option('--namespace <path>', "Patroni's DCS namespace (env PGDR_NAMESPACE, default /service)")
    .option('--leader-wait <seconds>', 'while the cluster has no usable leader (a failover), keep asking this long', defaults.leaderWait)
    .option('--max-lag <bytes>', 'with --from replica: skip replicas further behind the leader than this');
}

export function clusterSourceSettings(ctx: CommandContext, flags: ClusterFlags, env: NodeJS.ProcessEnv = process.env): ClusterSourceSettings {
  return {
    patroni: ctx.settings.patroni,
    etcd: ctx.settings.etcd,
    scope: flags.scope ?? ctx.settings.scope,
    namespace: flags.namespace ?? ctx.settings.namespace,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    pgUser: ctx.settings.pgUser,
    env,
  };
}

function parseFrom(value: string | undefined): BackupFrom {
  if (value === undefined || value === 'leader' || value === 'primary') return 'leader';
  if (value === 'replica' || value === 'standby') return 'replica';
  throw new UsageError(`--from must be leader or replica, got ${JSON.stringify(value)}`, 'e.g. --from replica to spare the leader');
}

/** --leader-wait in milliseconds; commands differ only in how long they wait when it is not given. */
function leaderWaitMs(value: string | undefined, defaultSeconds: number): number {
  return (value === undefined ? defaultSeconds : secondsFlag('--leader-wait', value, { positive: false, example: 30 })) * 1000;
}

function parseMaxLag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+)\s*(|B|kB|KB|MB|GB)$/i.exec(value.trim());
  if (!match) throw new UsageError(`--max-lag must be a number of bytes (optionally kB, MB, GB), got ${JSON.stringify(value)}`, 'e.g. --max-lag 16MB');
  const unit = (match[2] ?? '').toUpperCase();
  const scale = unit === 'KB' ? 1024 : unit === 'MB' ? 1024 ** 2 : unit === 'GB' ? 1024 ** 3 : 1;
  return Number(match[1]) * scale;
}

/** Where `backup now` reads from, and what it must do for that source. */
export interface BackupTarget {
  endpoint: PgEndpoint;
  /** The Patroni member, when the source was found through Patroni or etcd. */
  sourceMember?: string;
  allowStandby: boolean;
  /** For a standby: ask the leader to finish the WAL segment holding the backup's end. */
  finishWal?: () => Promise<void>;
}

/**
 * With --patroni or --etcd the backup follows the leader (or, --from replica, the least-lagged healthy replica),
 * resolved right before it starts; without them it reads from --pg-host as before.
 */
export async function resolveBackupTarget(ctx: CommandContext, flags: ClusterFlags): Promise<BackupTarget> {
  const from = parseFrom(flags.from);
  const sources = clusterSourceSettings(ctx, flags);
  if (!hasClusterSources(sources)) {
    if (from === 'replica') {
      throw new UsageError('--from replica needs to know the cluster', 'pass --patroni URL[,URL] or --etcd URL[,URL] (PGDR_PATRONI, PGDR_ETCD)');
    }
    return { endpoint: ctx.pgEndpoint(), allowStandby: false };
  }
  const resolved = await resolveBackupSource(sources, {
    from,
    waitMs: leaderWaitMs(flags.leaderWait, 30),
    maxLagBytes: parseMaxLag(flags.maxLag),
    log: (m) => ctx.log(m),
  });
  ctx.log(`backing up from the ${from}: ${resolved.reason}`);
  const leader = resolved.leader;
  return {
    endpoint: resolved.endpoint,
    sourceMember: resolved.member.name,
    allowStandby: from === 'replica',
    finishWal:
      from === 'replica' && leader !== null
        ? async () => {
            try {
              const lsn = await finishLeaderWalSegment(leader.endpoint, `pgdr backup from ${resolved.member.name}`);
              ctx.log(`asked the leader ${leader.member.name} to finish its WAL segment (switched at ${lsn})`);
            } catch (err) {
              // Not fatal: the leader still archives the segment when it fills or at archive_timeout.
              ctx.log(`could not ask the leader ${leader.member.name} to switch WAL (${errorMessage(err)}); waiting for it to archive the segment on its own`);
            }
          }
        : undefined,
  };
}

interface StatusMember {
  name: string;
  role: string;
  state: string;
  host: string | null;
  port: number | null;
  timeline: number | null;
  lagBytes: number | null;
  apiUrl: string | null;
}

interface StatusChoice {
  member: string;
  host: string | null;
  port: number | null;
  reason: string;
}

export interface ClusterStatus {
  scope: string | null;
  via: { kind: string; endpoint: string } | null;
  leader: string | null;
  paused: boolean;
  members: StatusMember[];
  /** The member `backup now` would read from, and the one `backup now --from replica` would. */
  backupSource: { leader: StatusChoice | null; replica: StatusChoice | null };
  endpoints: EndpointReport[];
  problems: string[];
}

function statusChoice(choice: SourceChoice, problems: string[], label: string): StatusChoice | null {
  if (!choice.ok) {
    problems.push(`${label}: ${choice.problem}`);
    return null;
  }
  return { member: choice.member.name, host: choice.member.host, port: choice.member.port, reason: choice.reason };
}

/** Pure: the status document for a view (or none) and the endpoints' health. */
export function buildClusterStatus(view: ClusterView | null, endpoints: EndpointReport[], maxLagBytes?: number): ClusterStatus {
  const problems = endpoints.filter((e) => !e.ok).map((e) => e.error ?? `${e.endpoint} failed`);
  if (view === null) {
    return { scope: null, via: null, leader: null, paused: false, members: [], backupSource: { leader: null, replica: null }, endpoints, problems };
  }
  const members = view.members.map((m: ClusterMember) => ({
    name: m.name,
    role: m.role,
    state: m.state,
    host: m.host,
    port: m.port,
    timeline: m.timeline,
    lagBytes: m.lagBytes,
    apiUrl: m.apiUrl,
  }));
  return {
    scope: view.scope,
    via: view.source,
    leader: view.leader,
    paused: view.paused,
    members,
    backupSource: {
      leader: statusChoice(chooseLeader(view), problems, 'backup from the leader'),
      replica: statusChoice(chooseReplica(view, { maxLagBytes }), problems, 'backup from a replica'),
    },
    endpoints,
    problems,
  };
}

export function formatClusterStatus(status: ClusterStatus): string {
  const lines: string[] = [];
  if (status.via === null) {
    lines.push('no Patroni or etcd endpoint answered');
  } else {
    lines.push(`cluster ${status.scope ?? '(scope unknown)'}, as seen by ${status.via.kind} ${status.via.endpoint}${status.paused ? ' (maintenance mode: paused)' : ''}`);
    const rows = [
      ['member', 'role', 'state', 'address', 'timeline', 'lag'],
      ...status.members.map((m) => [
        m.name,
        m.role,
        m.state || '-',
        m.host !== null && m.port !== null ? `${m.host}:${m.port}` : '-',
        m.timeline === null ? '-' : String(m.timeline),
        m.lagBytes === null ? (m.role === 'leader' ? '' : 'unknown') : formatBytes(m.lagBytes),
      ]),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
    for (const row of rows) lines.push(row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
    if (status.members.length === 0) lines.push('(no members registered)');
    const describe = (c: StatusChoice | null): string => (c === null ? 'none' : `${c.member} (${c.host}:${c.port})`);
    lines.push(`backup now would read from: ${describe(status.backupSource.leader)}`);
    lines.push(`backup now --from replica would read from: ${describe(status.backupSource.replica)}`);
  }
  for (const e of status.endpoints.filter((x) => !x.ok)) lines.push(`unreachable: ${e.kind} ${e.endpoint}: ${e.error ?? ''}`);
  for (const p of status.problems.filter((x) => !status.endpoints.some((e) => e.error === x))) lines.push(`note: ${p}`);
  return lines.join('\n');
}

interface AdapterFlags {
  datadir?: string;
  scope?: string;
  role?: string;
  connstring?: string;
  force?: boolean;
  config?: string;
  targetTime?: string;
  targetLsn?: string;
  targetName?: string;
  target?: string;
  backupId?: string;
  tablespaceMap?: string[];
  /** Patroni passes a method's keys as --key=value: a `tablespace_map: OLD=NEW[,OLD=NEW]` key arrives as one string. */
  tablespace_map?: string;
  /** `--delta`, or a `delta: true` key of the method's configuration (Patroni passes --delta=true). */
  delta?: boolean | string;
}

export function registerClusterCommands(program: Command, action: Action): void {
  const cluster = program.command('cluster').description('the Patroni cluster as pgdr sees it');
  addClusterSourceOptions(
    addCommonOptions(
      cluster
        .command('status')
        .description('members, roles, timelines and lag, and which member pgdr would back up from (through --patroni or --etcd)'),
    ),
    { leaderWait: '0' },
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as ClusterFlags;
      const sources = clusterSourceSettings(ctx, flags);
      if (!hasClusterSources(sources)) {
        throw new UsageError('cluster status needs Patroni or etcd endpoints', 'pass --patroni URL[,URL] or --etcd URL[,URL] (PGDR_PATRONI, PGDR_ETCD)');
      }
      const readers = clusterReaders(sources);
      const waitMs = leaderWaitMs(flags.leaderWait, 0);
      if (waitMs > 0) {
        // Wait only for a leader to appear; the status below is then read fresh from every endpoint.
        await waitForDecision(readers, async (view) => (view.leader !== null ? { ok: true, value: view } : { ok: false, problem: 'no leader', retryable: true }), {
          waitMs,
          what: 'a leader',
          log: (m) => ctx.log(m),
        });
      }
      const { view, endpoints } = await readClusterOnce(readers);
      const status = buildClusterStatus(view, endpoints, parseMaxLag(flags.maxLag));
      ctx.emit(status, formatClusterStatus(status));
      // Nothing answered: a failure of the service, not a status to exit 0 on (the document above still says why).
      if (view === null) {
        throw new ServiceError(
          `no Patroni or etcd endpoint answered (${endpoints.map((e) => e.error ?? e.endpoint).join('; ')})`,
          'check that Patroni and etcd run and that --patroni/--etcd name their REST and client URLs',
        );
      }
    }),
  );

  const patroni = program.command('patroni').description('commands Patroni runs: create_replica_methods and bootstrap.method adapters');

  addCommonOptions(
    patroni
      .command('create-replica')
      .description('create_replica_methods: build a replica from the newest backup in the repository instead of from the leader')
      .option('--datadir <dir>', 'the data directory to create (Patroni passes --datadir)')
      .option('--scope <name>', 'passed by Patroni; informational')
      .option('--role <role>', 'passed by Patroni (replica)')
      .option('--connstring <dsn>', 'passed by Patroni; unused: the data comes from the repository, streaming from the leader follows')
      .option('--force', 'replace a stopped data directory (the old one stays until the restored copy is complete)')
      .option('--delta [bool]', 'over the stopped data directory Patroni kept (keep_data: true): rewrite only the files that differ from the backup; a delta: true key of the method does the same')
      .option('--tablespace-map <old=new>', 'restore a tablespace into NEW instead of its old location; repeatable', collect, [] as string[])
      // A `tablespace_map: "OLD=NEW[,OLD=NEW]"` key of the method's configuration, as Patroni passes it.
      .addOption(new Option('--tablespace_map <list>').hideHelp())
      // Patroni passes every key of the method's configuration as --key=value, its own switches included.
      .addOption(new Option('--keep_data <bool>').hideHelp())
      .addOption(new Option('--no_leader <bool>').hideHelp())
      .addOption(new Option('--no_master <bool>').hideHelp()),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as AdapterFlags;
      if (flags.role !== undefined && flags.role !== 'replica') {
        throw new UsageError(`create-replica builds replicas, Patroni asked for role ${JSON.stringify(flags.role)}`, 'use `pgdr patroni bootstrap` as bootstrap.method');
      }
      await restoreForPatroni(ctx, flags, { kind: 'latest' }, 'replica');
    }),
  );

  addCommonOptions(
    patroni
      .command('bootstrap')
      .description('bootstrap.method: create a new cluster\'s first member by point-in-time restore from the repository')
      .option('--datadir <dir>', 'the data directory to create (Patroni passes --datadir)')
      .option('--scope <name>', 'passed by Patroni; informational')
      .option('--target-time <timestamp>', 'recover to this time; ISO 8601 or PostgreSQL timestamptz, with a zone')
      .option('--target-lsn <lsn>', 'recover to this WAL location')
      .option('--target-name <name>', 'recover to a restore point')
      .option('--target <latest>', 'latest: replay all archived WAL (the default)')
      .option('--backup-id <id>', 'restore this backup instead of the newest one that ends before the target')
      .option('--force', 'replace a stopped data directory (the old one stays until the restored copy is complete)')
      .option('--tablespace-map <old=new>', 'restore a tablespace into NEW instead of its old location; repeatable', collect, [] as string[])
      .addOption(new Option('--tablespace_map <list>').hideHelp()),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as AdapterFlags;
      const target = parseRecoveryTarget({ targetTime: flags.targetTime, targetLsn: flags.targetLsn, targetName: flags.targetName, target: flags.target });
      await restoreForPatroni(ctx, flags, target, 'bootstrap');
    }),
  );
}

/**
 * Both adapters unpack a backup with pgdr's recovery settings and leave the start to Patroni: for a replica it adds
 * standby.signal and primary_conninfo and streams from the leader once the archive is replayed; for a bootstrap
 * it recovers to the target (keep_existing_recovery_conf: true keeps pgdr's settings) and promotes.
 */
async function restoreForPatroni(ctx: CommandContext, flags: AdapterFlags, target: RecoveryTarget, purpose: 'replica' | 'bootstrap'): Promise<void> {
  const pgdata = flags.datadir ?? ctx.settings.pgdata;
  if (!pgdata) throw new UsageError(`patroni ${purpose === 'replica' ? 'create-replica' : 'bootstrap'} needs the data directory`, 'Patroni passes --datadir; by hand, pass --datadir DIR');
  const mappings = [...(flags.tablespaceMap ?? []), ...(flags.tablespace_map === undefined ? [] : [flags.tablespace_map])];
  const delta = flags.delta === true || (typeof flags.delta === 'string' && /^(true|on|yes|1)$/i.test(flags.delta));
  if (typeof flags.delta === 'string' && !delta && !/^(false|off|no|0)$/i.test(flags.delta)) {
    throw new UsageError(`--delta=${flags.delta} is not a boolean`, 'Patroni passes the method\'s delta key as --delta=true or --delta=false');
  }
  const result = await restoreInto(ctx, pgdata, target, { ...flags, delta }, {
    archiveMode: 'preserve',
    start: false,
    startTimeoutMs: 0,
    progress: false,
    tablespaceMap: parseTablespaceMappings(mappings.flatMap((m) => m.split(',')).filter((m) => m !== '')),
  });
  ctx.emit(
    { ...result, purpose, scope: flags.scope ?? null },
    `restored backup ${result.backupId} into ${result.pgdata} for Patroni (${purpose === 'replica' ? 'a new replica' : `bootstrap to ${result.target}`})`,
  );
}
