import { dirname, join } from 'node:path';
import { UsageError } from '../errors.js';
import { formatLsn } from '../postgres/lsn.js';
import { shellQuote } from '../postgres/recovery-config.js';
import { describeRecoveryTarget, type RecoveryTarget } from '../postgres/recovery-target.js';
import type { EtcdRestorePlan } from '../etcd/restore-plan.js';
import { deriveRebuildConfig, type PatroniMemberConfig } from './patroni-config.js';

/**
 * `pgdr restore cluster` decided from its inputs alone (pure, unit-tested): which member leads, which backup
 * it restores, how etcd comes back, what each step does and which commands start what. The executor
 * (execute.ts) only carries the steps out, in order; `--dry-run` prints this and stops.
 */

export type EtcdRebuildRequest =
  | {
      mode: 'snapshot';
      snapshotId: string;
      revision: number;
      restore: EtcdRestorePlan;
      /** Client URL of every restored member, by name: where pgdr starts it and where Patroni finds it. */
      clientUrls: Record<string, string>;
    }
  | {
      /** A fresh or running etcd: only the old scope's keys are removed. */
      mode: 'existing';
      endpoints: string[];
    };

export interface RebuildRequest {
  /** The members' Patroni configurations; the first one given becomes the leader. */
  members: PatroniMemberConfig[];
  target: RecoveryTarget;
  /** The backup that serves the target (planRestore's choice). */
  backup: { backupId: string; stopTime: string; timeline: number; reason: string };
  /** The newest complete backup in the repository. */
  newestBackupId: string;
  etcd: EtcdRebuildRequest;
  /** run: pgdr starts etcd and Patroni (itself, or through the templates); manual: it prints what to run. */
  start: 'run' | 'manual';
  /** Start commands instead of detached children, e.g. "systemctl start patroni@{name}". */
  patroniStartTemplate?: string;
  etcdStartTemplate?: string;
  /** argv that runs this pgdr: [node, /path/bin/pgdr]. */
  pgdr: string[];
  /** --repo/--cluster/--s3-* words every pgdr command Patroni runs needs, so they reach the same repository. */
  repositoryArgs: string[];
  /** `--tablespace-map OLD=NEW` pairs every member restores with (the same on every host). */
  tablespaceMap?: string[];
}

export type RebuildAction = 'restore-etcd' | 'start-etcd' | 'clear-scope' | 'write-configs' | 'start-leader' | 'start-replicas' | 'report-status';

export interface RebuildStep {
  number: number;
  action: RebuildAction;
  title: string;
  details: string[];
  /** True when the operator runs it (--no-start); pgdr prints it instead. */
  manual: boolean;
}

export interface PlannedEtcdMember {
  name: string;
  dataDir: string;
  peerUrls: string[];
  clientUrl: string;
  logFile: string;
  pidFile: string;
  /** argv pgdr runs to start it (a detached etcd, or the --etcd-start-command template filled in). */
  startCommand: string[];
  detached: boolean;
}

export interface PlannedMember {
  name: string;
  role: 'leader' | 'replica';
  dataDir: string;
  sourceConfig: string;
  /** The derived Patroni configuration pgdr writes next to the data directory. */
  configFile: string;
  logFile: string;
  pidFile: string;
  restApiUrl: string;
  startCommand: string[];
  detached: boolean;
}

export interface RebuildPlan {
  scope: string;
  namespace: string;
  target: string;
  backupId: string;
  leader: string;
  replicasFrom: 'repository' | 'leader';
  etcd: { mode: 'snapshot' | 'existing'; snapshotId: string | null; revision: number | null; endpoints: string[]; members: PlannedEtcdMember[]; initialCluster: string | null; initialClusterToken: string | null };
  members: PlannedMember[];
  steps: RebuildStep[];
  notes: string[];
  manual: boolean;
}

export interface RebuildPlanResult {
  plan: RebuildPlan;
  /** The derived Patroni configuration of each member, by name. Kept out of the plan: it may hold passwords. */
  configs: Record<string, Record<string, unknown>>;
}

export function planRebuild(request: RebuildRequest): RebuildPlanResult {
  const { members } = request;
  const leaderConfig = members[0];
  if (leaderConfig === undefined) throw new UsageError('restore cluster needs the members\' Patroni configs', 'pass --patroni-config m1.yml,m2.yml,m3.yml (the first one becomes the leader)');
  checkMembers(members);
  const scope = leaderConfig.scope;
  const namespace = leaderConfig.namespace;
  const notes: string[] = [];
  const manual = request.start === 'manual';

  const etcd = planEtcd(request);
  const endpoints = etcd.endpoints;

  // create-replica restores the newest backup: right only when that is the leader's backup. A newer one stopped
  // after the target, on the old timeline past the new leader's fork, and could never follow the new timeline.
  const replicasFrom = request.newestBackupId === request.backup.backupId ? 'repository' : 'leader';
  if (replicasFrom === 'leader' && members.length > 1) {
    notes.push(
      `the repository holds a backup newer than the target (${request.newestBackupId}), which lies past the point where the rebuilt leader leaves the old timeline; ` +
        'replicas therefore clone from the rebuilt leader (create_replica_methods: [basebackup]) instead of from the repository',
    );
  }
  const quote = (words: string[]) => words.map((w) => shellQuote(w)).join(' ');
  const tablespaceArgs = (request.tablespaceMap ?? []).flatMap((m) => ['--tablespace-map', m]);
  const bootstrapCommand = quote([...request.pgdr, 'patroni', 'bootstrap', ...request.repositoryArgs, ...targetArgs(request.target), '--backup-id', request.backup.backupId, ...tablespaceArgs]);
  const replicaCommand = quote([...request.pgdr, 'patroni', 'create-replica', ...request.repositoryArgs, ...tablespaceArgs]);
  // PostgreSQL reads a lone % in restore_command as a placeholder: every other % is doubled.
  const restoreCommand = [...request.pgdr, 'wal', 'fetch', '%f', '%p', '--abort-recovery-on-error', ...request.repositoryArgs]
    .map((w) => (w === '%f' || w === '%p' ? w : shellQuote(w.replace(/%/g, '%%'))))
    .join(' ');

  const configs: Record<string, Record<string, unknown>> = {};
  const planned: PlannedMember[] = members.map((m, i) => {
    const sameEtcd = sameSet(m.etcdHosts, endpoints);
    if (!sameEtcd) notes.push(`${m.name}: its config names etcd ${m.etcdHosts.join(',')}; the rebuilt cluster uses ${endpoints.join(',')}, written into its derived config`);
    if (!m.archives) notes.push(`${m.name}: no archive_command in its config: the rebuilt cluster will not archive its new timeline into the repository`);
    configs[m.name] = deriveRebuildConfig(m, {
      bootstrapCommand,
      replicaCommand: replicasFrom === 'repository' ? replicaCommand : null,
      restoreCommand,
      etcdHosts: sameEtcd ? null : endpoints,
    });
    const base = join(dirname(m.dataDir), `patroni-${m.name}.pgdr-rebuild`);
    const configFile = `${base}.yml`;
    const template = request.patroniStartTemplate;
    return {
      name: m.name,
      role: i === 0 ? ('leader' as const) : ('replica' as const),
      dataDir: m.dataDir,
      sourceConfig: m.path,
      configFile,
      logFile: `${base}.log`,
      pidFile: `${base}.pid`,
      restApiUrl: m.restApiUrl,
      startCommand: template === undefined ? ['patroni', configFile] : fillTemplate(template, { name: m.name, config: configFile, datadir: m.dataDir }, '--start-command'),
      detached: template === undefined,
    };
  });
  if (!leaderConfig.archives) notes.push('without archive_command on the leader, replicas created from the repository cannot reach its new timeline');

  const steps: Omit<RebuildStep, 'number'>[] = [];
  const leader = planned[0] as PlannedMember;
  const replicas = planned.slice(1);
  const scopePrefix = `${namespace}/${scope}/`;
  if (etcd.mode === 'snapshot') {
    steps.push({
      action: 'restore-etcd',
      title: `restore etcd snapshot ${etcd.snapshotId} (revision ${etcd.revision}) into a new ${etcd.members.length}-member etcd cluster`,
      details: etcd.members.map((e) => `${e.name}: ${e.dataDir} (peer ${e.peerUrls.join(',')}, client ${e.clientUrl})`),
      manual: false,
    });
    steps.push({
      action: 'start-etcd',
      title: 'start the etcd members and wait for a quorum',
      details: etcd.members.map((e) => `${e.name}: ${quote(e.startCommand)}${e.detached ? ` (log ${e.logFile}, pid ${e.pidFile})` : ''}`),
      manual,
    });
  }
  steps.push({
    action: 'clear-scope',
    title: `remove the old cluster's keys under ${scopePrefix} from etcd (${endpoints.join(',')})`,
    details: [
      'Patroni bootstraps only a scope without an initialize key; other keys in etcd stay as they are',
      ...(manual ? [`ETCDCTL_API=3 etcdctl --endpoints ${endpoints.join(',')} del --prefix ${scopePrefix}`] : []),
    ],
    manual,
  });
  steps.push({
    action: 'write-configs',
    title: 'write each member\'s Patroni config for the rebuild, next to its data directory',
    details: planned.map((m) => `${m.name}: ${m.configFile} (from ${m.sourceConfig})`),
    manual: false,
  });
  steps.push({
    action: 'start-leader',
    title: `start ${leader.name}: Patroni bootstraps it by point-in-time restore of backup ${request.backup.backupId} to ${describeRecoveryTarget(request.target)}, then it leads on a new timeline`,
    details: [
      `bootstrap.method pgdr: ${bootstrapCommand}`,
      `${quote(leader.startCommand)}${leader.detached ? ` (log ${leader.logFile}, pid ${leader.pidFile})` : ''}`,
      'wait until it leads and its new timeline\'s history file is in the repository',
    ],
    manual,
  });
  if (replicas.length > 0) {
    steps.push({
      action: 'start-replicas',
      title: `start ${replicas.map((r) => r.name).join(', ')}: replicas created ${replicasFrom === 'repository' ? 'from the repository (create_replica_methods: pgdr, then basebackup)' : 'from the leader (basebackup)'}`,
      details: [...replicas.map((r) => `${r.name}: ${quote(r.startCommand)}${r.detached ? ` (log ${r.logFile}, pid ${r.pidFile})` : ''}`), 'wait until every replica streams from the leader on its timeline'],
      manual,
    });
  }
  steps.push({
    action: 'report-status',
    title: 'report the cluster\'s status: leader, replicas streaming, timelines',
    details: manual ? [`pgdr cluster status --patroni ${planned.map((m) => m.restApiUrl).join(',')}`] : [],
    manual,
  });

  return {
    plan: {
      scope,
      namespace,
      target: describeRecoveryTarget(request.target),
      backupId: request.backup.backupId,
      leader: leader.name,
      replicasFrom,
      etcd: {
        mode: etcd.mode,
        snapshotId: etcd.snapshotId,
        revision: etcd.revision,
        endpoints,
        members: etcd.members,
        initialCluster: etcd.initialCluster,
        initialClusterToken: etcd.initialClusterToken,
      },
      members: planned,
      steps: steps.map((s, i) => ({ number: i + 1, ...s })),
      notes,
      manual,
    },
    configs,
  };
}

function planEtcd(request: RebuildRequest): RebuildPlan['etcd'] {
  const etcd = request.etcd;
  if (etcd.mode === 'existing') {
    const endpoints = etcd.endpoints.length > 0 ? etcd.endpoints : [...new Set(request.members.flatMap((m) => m.etcdHosts))];
    return { mode: 'existing', snapshotId: null, revision: null, endpoints, members: [], initialCluster: null, initialClusterToken: null };
  }
  if (etcd.restore.notRestored.length > 0) {
    throw new UsageError(
      `restore cluster restores every etcd member, but --etcd-members leaves out ${etcd.restore.notRestored.join(', ')}`,
      'list every member of --etcd-initial-cluster in --etcd-members; on several hosts, restore etcd per host (pgdr etcd restore), start it, and use --etcd-snapshot none',
    );
  }
  const known = new Set(etcd.restore.members.map((m) => m.name));
  for (const name of Object.keys(etcd.clientUrls)) {
    if (!known.has(name)) throw new UsageError(`--etcd-client-urls names ${name}, which is not an etcd member`, `the members are ${[...known].join(', ')}`);
  }
  const members = etcd.restore.members.map((m) => {
    const clientUrl = etcd.clientUrls[m.name];
    if (clientUrl === undefined) {
      throw new UsageError(`--etcd-client-urls gives no client URL for etcd member ${m.name}`, 'give every member one: --etcd-client-urls e1=http://10.0.0.1:2379,e2=...');
    }
    const base = join(dirname(m.dataDir), `etcd-${m.name}.pgdr-rebuild`);
    const template = request.etcdStartTemplate;
    const fields = { name: m.name, datadir: m.dataDir, client: clientUrl, peer: m.peerUrls.join(','), 'initial-cluster': etcd.restore.initialCluster, token: etcd.restore.initialClusterToken };
    return {
      name: m.name,
      dataDir: m.dataDir,
      peerUrls: m.peerUrls,
      clientUrl,
      logFile: `${base}.log`,
      pidFile: `${base}.pid`,
      startCommand:
        template === undefined
          ? [
              'etcd',
              '--name', m.name,
              '--data-dir', m.dataDir,
              '--listen-client-urls', clientUrl,
              '--advertise-client-urls', clientUrl,
              '--listen-peer-urls', m.peerUrls.join(','),
              '--initial-advertise-peer-urls', m.peerUrls.join(','),
              '--initial-cluster', etcd.restore.initialCluster,
              '--initial-cluster-token', etcd.restore.initialClusterToken,
            ]
          : fillTemplate(template, fields, '--etcd-start-command'),
      detached: template === undefined,
    };
  });
  const clientUrls = members.map((m) => m.clientUrl);
  if (new Set(clientUrls).size !== clientUrls.length) throw new UsageError('two etcd members share a client URL', 'give each member its own --etcd-client-urls entry');
  return {
    mode: 'snapshot',
    snapshotId: etcd.snapshotId,
    revision: etcd.revision,
    endpoints: clientUrls,
    members,
    initialCluster: etcd.restore.initialCluster,
    initialClusterToken: etcd.restore.initialClusterToken,
  };
}

function checkMembers(members: PatroniMemberConfig[]): void {
  const first = members[0] as PatroniMemberConfig;
  for (const m of members) {
    if (m.scope !== first.scope) {
      throw new UsageError(`the Patroni configs disagree on scope: ${first.path} says ${first.scope}, ${m.path} says ${m.scope}`, 'pass the configs of one cluster\'s members only');
    }
    if (m.namespace !== first.namespace) {
      throw new UsageError(`the Patroni configs disagree on namespace: ${first.path} says ${first.namespace}, ${m.path} says ${m.namespace}`, 'every member of a cluster uses the same namespace');
    }
  }
  const unique = (what: string, value: (m: PatroniMemberConfig) => string) => {
    const seen = new Map<string, string>();
    for (const m of members) {
      const v = value(m);
      const other = seen.get(v);
      if (other !== undefined) throw new UsageError(`${other} and ${m.path} have the same ${what} ${v}`, 'pass each member\'s own config, once');
      seen.set(v, m.path);
    }
  };
  unique('member name', (m) => m.name);
  unique('data_dir', (m) => m.dataDir);
  unique('REST API address', (m) => m.restApiUrl);
  for (const a of members) {
    for (const b of members) {
      if (a !== b && b.dataDir.startsWith(`${a.dataDir}/`)) throw new UsageError(`data_dir ${b.dataDir} (${b.name}) lies inside ${a.dataDir} (${a.name})`, 'give each member a directory of its own');
    }
  }
}

/** The target as `pgdr patroni bootstrap` takes it. */
export function targetArgs(target: RecoveryTarget): string[] {
  switch (target.kind) {
    case 'time':
      return ['--target-time', target.text];
    case 'lsn':
      return ['--target-lsn', formatLsn(target.lsn)];
    case 'name':
      return ['--target-name', target.name];
    case 'latest':
      return ['--target', 'latest'];
  }
}

/** Splits a start template into words (no shell) and fills {placeholders} in each; an unknown one is an error. */
export function fillTemplate(template: string, fields: Record<string, string>, flag: string): string[] {
  const words = template.trim().split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) throw new UsageError(`${flag} is empty`, 'e.g. --start-command "systemctl start patroni@{name}"');
  return words.map((word) =>
    word.replace(/\{([a-z-]+)\}/g, (whole, key: string) => {
      const value = fields[key];
      if (value === undefined) throw new UsageError(`${flag} uses ${whole}, which pgdr does not know`, `placeholders: ${Object.keys(fields).map((k) => `{${k}}`).join(' ')}`);
      return value;
    }),
  );
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const norm = (xs: readonly string[]) => [...new Set(xs.map((x) => x.replace(/\/+$/, '')))].sort().join(',');
  return norm(a) === norm(b);
}

/** The plan for people: numbered steps with their details, then the notes. */
export function formatRebuildPlan(plan: RebuildPlan): string {
  const lines = [
    `rebuild of Patroni cluster ${plan.scope} (namespace ${plan.namespace}) from backup ${plan.backupId} to ${plan.target}; leader ${plan.leader}`,
  ];
  for (const step of plan.steps) {
    lines.push(`${step.number}. ${step.manual ? '[you] ' : ''}${step.title}`);
    for (const d of step.details) lines.push(`     ${d}`);
  }
  for (const note of plan.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}
