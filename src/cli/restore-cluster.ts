import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { UsageError, errorMessage } from '../errors.js';
import { chooseEtcdSnapshot, readEtcdSnapshots } from '../etcd/catalog.js';
import { normaliseEtcdEndpoint } from '../etcd/connection.js';
import { planEtcdRestore, type EtcdRestorePlan } from '../etcd/restore-plan.js';
import { parseRecoveryTarget } from '../postgres/recovery-target.js';
import { executeRebuild, findRebuildObstacles, type RebuildResult } from '../rebuild/execute.js';
import { parsePatroniConfig } from '../rebuild/patroni-config.js';
import { formatRebuildPlan, planRebuild, type EtcdRebuildRequest, type RebuildPlan } from '../rebuild/plan.js';
import { readBackupCatalog } from '../repo/catalog.js';
import { readRestorePoint } from '../repo/restore-points.js';
import type { BackupManifest } from '../repo/manifest.js';
import { parseTablespaceMappings, planTablespaceTargets } from '../restore/tablespaces.js';
import { planRestore } from '../restore/plan.js';
import { checkIdentityForBackup } from '../restore/execute.js';
import { buildClusterStatus, formatClusterStatus } from './cluster.js';
import { addCommonOptions, pgdrExecutable, type CommandContext } from './context.js';
import { secondsFlag } from './flag-values.js';
import type { Action } from './action.js';

/**
 * `pgdr restore cluster`: a whole Patroni cluster (etcd, the leader by PITR, replicas) rebuilt from the repository
 * alone. The handler reads the inputs (configs, repository catalogs), asks the pure planner for the steps, prints
 * them, and hands them to the executor. docs/runbooks/full-cluster-rebuild.md is the procedure around it.
 */

interface RestoreClusterFlags {
  patroniConfig?: string;
  targetTime?: string;
  targetLsn?: string;
  targetName?: string;
  target?: string;
  backupId?: string;
  etcdSnapshot: string;
  etcdMembers?: string;
  etcdInitialCluster?: string;
  etcdInitialClusterToken?: string;
  etcdClientUrls?: string;
  force?: boolean;
  dryRun?: boolean;
  start?: boolean;
  startCommand?: string;
  etcdStartCommand?: string;
  waitTimeout: string;
  workDir?: string;
  tablespaceMap: string[];
}

/** Registers `cluster` under the `restore` command (src/cli/restore.ts calls this). */
export function registerRestoreClusterCommand(restore: Command, action: Action): void {
  addCommonOptions(
    restore
      .command('cluster')
      .description('rebuild a whole Patroni cluster from the repository: etcd from its snapshot, the leader by PITR (custom bootstrap), replicas from the repository')
      .option('--patroni-config <files>', 'the members\' Patroni YAML files, comma-separated; the first becomes the leader')
      .option('--target-time <timestamp>', 'recover to this time; ISO 8601 or PostgreSQL timestamptz, with a zone')
      .option('--target-lsn <lsn>', 'recover to this WAL location')
      .option('--target-name <name>', 'recover to a restore point')
      .option('--target <latest>', 'latest: replay all archived WAL (the default)')
      .option('--backup-id <id>', 'restore this backup instead of the newest one that ends before the target')
      .option('--etcd-snapshot <id>', 'etcd snapshot to restore (an id, or latest), or none to use the etcd of --etcd (or of the configs) as it is', 'latest')
      .option('--etcd-members <list>', 'restored etcd members: name=dataDir pairs, e.g. e1=/var/lib/etcd/e1,e2=...')
      .option('--etcd-initial-cluster <list>', 'the restored etcd cluster: name=peerURL pairs')
      .option('--etcd-initial-cluster-token <token>', 'token of the restored etcd cluster (default pgdr-rebuild-<time>)')
      .option('--etcd-client-urls <list>', 'client URL of each restored etcd member: name=URL pairs, e.g. e1=http://10.0.0.1:2379,...')
      .option('--force', 'delete what non-empty data directories (PostgreSQL and etcd) hold')
      .option('--dry-run', 'print the plan (and check the repository) and stop; nothing is written or started')
      .option('--no-start', 'restore etcd and write the configs, then print what to start on each host')
      .option('--start-command <template>', 'start each Patroni with this command instead of a detached child, e.g. "systemctl start patroni@{name}" ({name} {config} {datadir})')
      .option('--etcd-start-command <template>', 'start each etcd member with this command ({name} {datadir} {client} {peer} {initial-cluster} {token})')
      .option('--wait-timeout <seconds>', 'how long each waiting step (etcd quorum, leader, replicas) may take', '600')
      .option('--work-dir <dir>', 'where the etcd snapshot is downloaded and checked (default: the system temp dir)')
      .option(
        '--tablespace-map <old=new>',
        'every member restores this tablespace into NEW instead of its old location (OLD: old location, name or oid); repeatable',
        (value: string, previous: string[]) => [...previous, value],
        [] as string[],
      ),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as RestoreClusterFlags;
      const waitTimeout = secondsFlag('--wait-timeout', flags.waitTimeout, { positive: true, example: 900 });
      const members = readPatroniConfigs(flags.patroniConfig);
      const target = parseRecoveryTarget({ targetTime: flags.targetTime, targetLsn: flags.targetLsn, targetName: flags.targetName, target: flags.target });
      const start = flags.start === false ? 'manual' : 'run';
      if (start === 'manual' && (flags.startCommand !== undefined || flags.etcdStartCommand !== undefined)) {
        throw new UsageError('--no-start does not go with --start-command or --etcd-start-command', 'choose: pgdr starts the services (the templates), or you do (--no-start)');
      }

      const { store, layout } = ctx.openRepository();
      try {
        // The repository first: no backup for the target, or no snapshot, refuses before anything is touched.
        const catalog = await readBackupCatalog(store, layout);
        const restorePoint = target.kind === 'name' ? await readRestorePoint(store, layout, target.name) : null;
        const restorePlan = planRestore(catalog.complete, target, { backupId: flags.backupId, cluster: layout.cluster, ...(restorePoint === null ? {} : { restorePoint }) });
        const newest = [...catalog.complete].sort((a, b) => a.stopTime.localeCompare(b.stopTime) || a.backupId.localeCompare(b.backupId)).pop();
        // An encrypted backup and no identity that reads it: refused now, not by the leader's bootstrap after etcd
        // has been restored and Patroni started.
        await checkIdentityForBackup(catalog.complete, restorePlan.backup, ctx.settings.identityFile);

        let etcd: EtcdRebuildRequest;
        let etcdRestore: EtcdRestorePlan | null = null;
        if (flags.etcdSnapshot === 'none') {
          for (const flag of ['etcdMembers', 'etcdInitialCluster', 'etcdClientUrls'] as const) {
            if (flags[flag] !== undefined) throw new UsageError(`--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} restores etcd members; with --etcd-snapshot none nothing is restored`, 'drop it, or name a snapshot');
          }
          etcd = { mode: 'existing', endpoints: ctx.settings.etcd.map(normaliseEtcdEndpoint) };
        } else {
          etcdRestore = planEtcdRestore(
            {
              members: flags.etcdMembers ?? missing('--etcd-members'),
              initialCluster: flags.etcdInitialCluster ?? missing('--etcd-initial-cluster'),
              initialClusterToken: flags.etcdInitialClusterToken ?? `pgdr-rebuild-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}`,
            },
            process.cwd(),
          );
          const snapshot = chooseEtcdSnapshot(await readEtcdSnapshots(store, layout), flags.etcdSnapshot, `${store.location} (cluster ${layout.cluster})`);
          etcd = { mode: 'snapshot', snapshotId: snapshot.snapshotId, revision: snapshot.revision, restore: etcdRestore, clientUrls: parseClientUrls(flags.etcdClientUrls ?? missing('--etcd-client-urls')) };
        }

        const { plan, configs } = planRebuild({
          members,
          target,
          backup: { backupId: restorePlan.backup.backupId, stopTime: restorePlan.backup.stopTime, timeline: restorePlan.backup.timeline, reason: restorePlan.reason },
          newestBackupId: newest?.backupId ?? restorePlan.backup.backupId,
          etcd,
          start,
          patroniStartTemplate: flags.startCommand,
          etcdStartTemplate: flags.etcdStartCommand,
          pgdr: [process.execPath, pgdrExecutable()],
          repositoryArgs: repositoryArgs(ctx),
          // Checked now, against the chosen backup's tablespaces, rather than by each member's Patroni later.
          tablespaceMap: checkedTablespaceMap(flags.tablespaceMap, restorePlan.backup.objects),
        });

        if (flags.dryRun) {
          // The same checks the real run makes before it writes anything, so a clean dry run means it gets past them.
          const obstacles = await findRebuildObstacles(plan, flags.force === true);
          const refusals = obstacles.map((o) => ({ error: o.message, hint: o.hint }));
          ctx.emit(
            { dryRun: true, plan, wouldRefuse: refusals },
            `${formatRebuildPlan(plan)}\n` +
              (refusals.length === 0
                ? 'dry run: nothing was written or started; the real run would get past its checks'
                : `dry run: nothing was written or started; the real run would refuse:\n${refusals.map((r) => `  - ${r.error} (${r.hint})`).join('\n')}`),
          );
          if (obstacles.length > 0) {
            throw new UsageError(`restore cluster would refuse: ${obstacles[0]!.message}${obstacles.length > 1 ? ` (and ${obstacles.length - 1} more, listed above)` : ''}`, obstacles[0]!.hint);
          }
          return;
        }
        // The plan goes to stderr first, so that it stands above the progress lines; stdout gets the result.
        ctx.log(`plan:\n${formatRebuildPlan(plan)}`);
        const result = await executeRebuild({
          plan,
          configs,
          etcdRestore,
          store,
          layout,
          force: flags.force === true,
          waitTimeoutMs: waitTimeout * 1000,
          workDir: flags.workDir ?? tmpdir(),
          ...(ctx.settings.identityFile === undefined ? {} : { identityFile: ctx.settings.identityFile }),
          env: process.env,
          log: (m) => ctx.log(m),
        });
        const status = result.view === null ? null : buildClusterStatus(result.view, [{ kind: 'patroni', endpoint: result.view.source.endpoint, ok: true }]);
        ctx.emit(
          { dryRun: false, plan, started: result.started, leader: result.leader, status, manualSteps: result.manualSteps, stop: stopInstructions(plan, result) },
          humanResult(plan, result, status === null ? null : formatClusterStatus(status)),
        );
      } finally {
        await store.close();
      }
    }),
  );
}

function checkedTablespaceMap(values: string[], objects: BackupManifest['objects']): string[] {
  planTablespaceTargets(objects, parseTablespaceMappings(values));
  return values;
}

function missing(flag: string): never {
  throw new UsageError(`restoring etcd from a snapshot needs ${flag}`, 'give --etcd-members, --etcd-initial-cluster and --etcd-client-urls, or --etcd-snapshot none with --etcd URLs of a running etcd');
}

function readPatroniConfigs(list: string | undefined) {
  if (list === undefined || list.trim() === '') {
    throw new UsageError('restore cluster needs the members\' Patroni configs', 'pass --patroni-config m1.yml,m2.yml,m3.yml (the first one becomes the leader)');
  }
  return list.split(',').map((p) => p.trim()).filter((p) => p !== '').map((path) => {
    const absolute = resolve(path);
    let text: string;
    try {
      text = readFileSync(absolute, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read Patroni config ${absolute}: ${errorMessage(err)}`, 'check the --patroni-config paths');
    }
    return parsePatroniConfig(text, absolute);
  });
}

function parseClientUrls(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of text.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new UsageError(`--etcd-client-urls entry ${JSON.stringify(entry)} is not name=URL`, 'e.g. --etcd-client-urls e1=http://10.0.0.1:2379,e2=http://10.0.0.2:2379');
    const name = entry.slice(0, eq);
    if (out[name] !== undefined) throw new UsageError(`--etcd-client-urls names ${name} twice`, 'give each member one client URL');
    out[name] = normaliseEtcdEndpoint(entry.slice(eq + 1));
  }
  return out;
}

/**
 * The flags that make every pgdr Patroni runs reach this same repository (credentials stay in the environment):
 * the bootstrap, create-replica and restore_command. The identity file goes by its path (never its content), so
 * that `--identity-file` reaches them as PGDR_IDENTITY_FILE does through the environment.
 */
function repositoryArgs(ctx: CommandContext): string[] {
  const s = ctx.settings;
  const args = ['--repo', s.repo, '--cluster', s.cluster];
  if (s.s3Endpoint) args.push('--s3-endpoint', s.s3Endpoint);
  if (s.s3ForcePathStyle) args.push('--s3-force-path-style');
  if (s.identityFile) args.push('--identity-file', resolve(s.identityFile));
  return args;
}

function stopInstructions(plan: RebuildPlan, result: RebuildResult): string[] {
  // Patroni first (it stops PostgreSQL and gives up the leader key), replicas before the leader, etcd last.
  const order = [...result.started.filter((s) => s.kind === 'patroni').reverse(), ...result.started.filter((s) => s.kind === 'etcd')];
  const lines = order.filter((s) => s.pidFile !== null).map((s) => `kill $(cat ${s.pidFile})   # ${s.kind} ${s.name}`);
  if (lines.length > 0) lines.push(`these run detached from pgdr; for production, move them under your service manager (see docs/runbooks/full-cluster-rebuild.md) with the configs ${plan.members.map((m) => m.configFile).join(', ')}`);
  return lines;
}

function humanResult(plan: RebuildPlan, result: RebuildResult, status: string | null): string {
  const lines: string[] = [];
  if (result.manualSteps.length > 0) {
    lines.push('pgdr did its part; now run these steps yourself, in order:');
    for (const step of result.manualSteps) {
      lines.push(`${step.number}. ${step.title}`);
      for (const d of step.details) lines.push(`     ${d}`);
    }
  } else {
    lines.push(`cluster ${plan.scope} rebuilt from backup ${plan.backupId} to ${plan.target}: leader ${result.leader?.name ?? '?'} on timeline ${result.leader?.timeline ?? '?'}`);
  }
  if (status !== null) lines.push(status);
  const stop = stopInstructions(plan, result);
  if (stop.length > 0) lines.push('to stop what pgdr started:', ...stop.map((l) => `  ${l}`));
  return lines.join('\n');
}
