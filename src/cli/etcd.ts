import { tmpdir } from 'node:os';
import type { Command } from 'commander';
import { readEtcdSnapshots } from '../etcd/catalog.js';
import { resolveEtcdConnection } from '../etcd/connection.js';
import { restoreEtcdSnapshot } from '../etcd/restore.js';
import { planEtcdRestore } from '../etcd/restore-plan.js';
import { takeEtcdSnapshot } from '../etcd/snapshot.js';
import { formatBytes } from '../stream/progress.js';
import { addCommonOptions, type CommandContext } from './context.js';
import { secondsFlag } from './flag-values.js';
import type { Action } from './action.js';

interface SnapshotFlags {
  workDir?: string;
  timeout: string;
}

interface RestoreFlags {
  snapshotId: string;
  name?: string;
  dataDir?: string;
  members?: string;
  initialCluster?: string;
  initialClusterToken?: string;
  initialAdvertisePeerUrls?: string;
  workDir?: string;
  dryRun?: boolean;
}

export function registerEtcdCommands(program: Command, action: Action): void {
  const etcd = program.command('etcd').description('etcd snapshots: take, list and restore (docs/runbooks/etcd-restore.md)');

  addCommonOptions(
    etcd
      .command('snapshot')
      .description('stream a snapshot from one etcd member (--etcd / PGDR_ETCD) into the repository')
      .option('--work-dir <dir>', 'where the snapshot is staged while it is checked and compressed (default: the system temp dir)')
      .option('--timeout <seconds>', 'limit for streaming the whole snapshot', '600'),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as SnapshotFlags;
      const connection = resolveEtcdConnection(ctx.settings.etcd);
      const { store, layout } = ctx.openRepository('etcd');
      try {
        const manifest = await takeEtcdSnapshot({
          store,
          layout,
          connection,
          compressLevel: ctx.settings.compressLevel,
          encryptTo: ctx.settings.encryptRecipients,
          workDir: flags.workDir ?? tmpdir(),
          timeoutMs: secondsFlag('--timeout', flags.timeout, { positive: true, example: 600 }) * 1000,
          log: (m) => ctx.log(m),
        });
        ctx.emit(
          {
            snapshotId: manifest.snapshotId,
            revision: manifest.revision,
            bytes: manifest.bytes,
            storedBytes: manifest.storedBytes,
            member: manifest.member,
            etcdClusterId: manifest.etcdClusterId,
            etcdVersion: manifest.etcdVersion,
            startTime: manifest.startTime,
            stopTime: manifest.stopTime,
          },
          `etcd snapshot ${manifest.snapshotId} complete: revision ${manifest.revision}, ${manifest.totalKeys} keys, ` +
            `${formatBytes(manifest.bytes)} stored as ${formatBytes(manifest.storedBytes)}, from member ${manifest.member.name || manifest.member.id} (${manifest.member.endpoint})`,
        );
      } finally {
        await store.close();
      }
    }),
  );

  addCommonOptions(etcd.command('list').description('list the etcd snapshots in the repository, oldest first')).action(
    action(async (ctx: CommandContext) => {
      const { store, layout } = ctx.openRepository('etcd');
      let catalog;
      try {
        catalog = await readEtcdSnapshots(store, layout);
      } finally {
        await store.close();
      }
      const rows = [
        ...catalog.complete.map((m) => ({
          snapshotId: m.snapshotId,
          status: 'complete' as const,
          startTime: m.startTime as string | null,
          revision: m.revision as number | null,
          totalKeys: m.totalKeys as number | null,
          member: m.member.name || m.member.id,
          etcdClusterId: m.etcdClusterId as string | null,
          etcdVersion: m.etcdVersion as string | null,
          bytes: m.bytes as number | null,
          storedBytes: m.storedBytes as number | null,
          problem: null as string | null,
        })),
        ...catalog.incomplete.map((s) => ({ ...withoutManifest(s.snapshotId, 'incomplete'), storedBytes: s.storedBytes })),
        ...catalog.invalid.map((s) => ({ ...withoutManifest(s.snapshotId, 'invalid'), problem: s.problem })),
      ].sort((a, b) => a.snapshotId.localeCompare(b.snapshotId));
      const human =
        rows.length === 0
          ? `no etcd snapshots in ${store.location} for cluster ${layout.cluster}`
          : [
              'snapshot id        status      revision  keys     member            size      stored',
              ...rows.map(
                (r) =>
                  `${r.snapshotId}   ${r.status.padEnd(10)}  ${String(r.revision ?? '-').padEnd(8)}  ${String(r.totalKeys ?? '-').padEnd(7)}  ${String(r.member ?? '-').padEnd(16)}  ` +
                  `${(r.bytes === null ? '-' : formatBytes(r.bytes)).padEnd(8)}  ${r.storedBytes === null ? '-' : formatBytes(r.storedBytes)}${r.problem ? `  ${r.problem}` : ''}`,
              ),
            ].join('\n');
      ctx.emit(rows, human);
    }),
  );

  addCommonOptions(
    etcd
      .command('restore')
      .description(
        'restore a stored snapshot into new data directories of a new etcd cluster: one member (--name, --data-dir) ' +
          'or all of them (--members); every hash is checked before anything is written',
      )
      .option('--snapshot-id <id>', 'the snapshot to restore, or latest', 'latest')
      .option('--name <name>', 'restore one member: its name in --initial-cluster')
      .option('--data-dir <dir>', 'restore one member: its new data directory (absent or empty)')
      .option('--initial-advertise-peer-urls <urls>', "restore one member: its peer URLs (default and must-match: its --initial-cluster entry)")
      .option('--members <list>', 'restore every member at once: name=dataDir pairs, e.g. m1=/var/lib/etcd/m1,m2=/var/lib/etcd/m2')
      .option('--initial-cluster <list>', 'the new cluster: name=peerURL pairs, e.g. m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380')
      .option('--initial-cluster-token <token>', 'a token of the new cluster, different from the old one')
      .option('--work-dir <dir>', 'where the snapshot is downloaded and checked (default: the system temp dir)')
      .option('--dry-run', 'check the targets and every hash of the snapshot, print the plan, write nothing'),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as RestoreFlags;
      const plan = planEtcdRestore(
        {
          name: flags.name,
          dataDir: flags.dataDir,
          members: flags.members,
          initialCluster: flags.initialCluster,
          initialClusterToken: flags.initialClusterToken,
          initialAdvertisePeerUrls: flags.initialAdvertisePeerUrls,
        },
        process.cwd(),
      );
      if (plan.notRestored.length > 0) {
        ctx.log(`members ${plan.notRestored.join(', ')} of --initial-cluster are not restored by this run; restore each with --name and --data-dir before starting the cluster`);
      }
      const { store, layout } = ctx.openRepository('etcd');
      let result;
      try {
        result = await restoreEtcdSnapshot({
          store,
          layout,
          snapshotId: flags.snapshotId,
          ...(ctx.settings.identityFile === undefined ? {} : { identityFile: ctx.settings.identityFile }),
          plan,
          workDir: flags.workDir ?? tmpdir(),
          dryRun: flags.dryRun === true,
          log: (m) => ctx.log(m),
        });
      } finally {
        await store.close();
      }
      const members = plan.members.map((m) => ({ name: m.name, dataDir: m.dataDir, peerUrls: m.peerUrls }));
      const verb = result.dryRun ? 'would restore' : 'restored';
      ctx.emit(
        {
          snapshotId: result.manifest.snapshotId,
          revision: result.manifest.revision,
          initialCluster: plan.initialCluster,
          initialClusterToken: plan.initialClusterToken,
          members,
          notRestored: plan.notRestored,
          dryRun: result.dryRun,
        },
        [
          `etcd snapshot ${result.manifest.snapshotId} (revision ${result.manifest.revision}) verified; ${verb}:`,
          ...members.map((m) => `  ${m.name}  ${m.dataDir}  (peer ${m.peerUrls.join(',')})`),
          result.dryRun
            ? 'nothing was written (dry run)'
            : `start each member with its --name, --data-dir, --initial-advertise-peer-urls and --initial-cluster ${plan.initialCluster} (see docs/runbooks/etcd-restore.md)`,
        ].join('\n'),
      );
    }),
  );
}

/** A snapshot row with nothing a manifest would tell: the objects of an unfinished snapshot, or an unreadable one. */
function withoutManifest(snapshotId: string, status: 'incomplete' | 'invalid') {
  return {
    snapshotId,
    status,
    startTime: null,
    revision: null,
    totalKeys: null,
    member: null,
    etcdClusterId: null,
    etcdVersion: null,
    bytes: null,
    storedBytes: null as number | null,
    problem: null as string | null,
  };
}
