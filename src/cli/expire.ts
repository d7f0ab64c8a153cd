import { Option, type Command } from 'commander';
import { formatDuration, loadPolicy, type RetentionPolicy } from '../config/policy.js';
import { UsageError } from '../errors.js';
import { parseTimestamp } from '../postgres/recovery-target.js';
import { runExpire, type ExpireReport } from '../retention/expire.js';
import { formatBytes } from '../stream/progress.js';
import { addCommonOptions, type CommandContext } from './context.js';
import { repositoryLabel } from '../config/repositories.js';
import type { Action } from './action.js';

interface ExpireFlags {
  dryRun?: boolean;
  lockWait: string;
  now?: string;
}

export function registerExpireCommands(program: Command, action: Action): void {
  addCommonOptions(
    program
      .command('expire')
      .description('apply the retention policy: delete the backups, WAL, etcd snapshots and interrupted uploads it no longer keeps (never what S3 Object Lock still retains: it says until when)')
      .option('--dry-run', 'list every backup with its verdict and the WAL that would go; delete nothing (takes no lock)')
      .option('--lock-wait <seconds>', 'wait this long for a running backup to finish; 0 fails at once, deleting nothing', '0')
      // A testing aid, kept out of --help: plan as if the clock said this (retention tests simulate months of
      // backups without waiting for them). The repository lock still uses the real clock.
      .addOption(new Option('--now <timestamp>', 'plan as if it were this time (testing aid)').hideHelp()),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as ExpireFlags;
      const policy = loadPolicy(ctx.settings.policy);
      const lockWait = Number(flags.lockWait);
      if (!Number.isFinite(lockWait) || lockWait < 0) {
        throw new UsageError(`--lock-wait must be a number of seconds, got ${JSON.stringify(flags.lockWait)}`, 'e.g. --lock-wait 600');
      }
      const now = flags.now === undefined ? undefined : new Date(Number(parseTimestamp(flags.now, '--now').epochMicros / 1000n));
      // Retention applies to each repository on its own (its own backups keep its own WAL): the one named, or each in turn.
      const visits = ctx.repositoriesToVisit();
      const runs = visits.length > 1 ? visits.map((r) => ({ name: repositoryLabel(r), ctx: ctx.forRepository(r) })) : [{ name: undefined, ctx }];
      const reports: { name: string | undefined; report: ExpireReport }[] = [];
      for (const run of runs) {
        const { store, layout } = run.ctx.openRepository();
        try {
          const report = await runExpire({
            store,
            layout,
            lock: run.ctx.locker(),
            policy,
            dryRun: flags.dryRun === true,
            lockWaitMs: lockWait * 1000,
            now,
            ...(run.ctx.settings.objectLock !== undefined ? { objectLock: run.ctx.settings.objectLock } : {}),
            log: (m) => ctx.log(run.name === undefined ? m : `${run.name}: ${m}`),
          });
          reports.push({ name: run.name, report });
        } finally {
          await store.close();
        }
      }
      if (reports.length === 1) ctx.emit(reports[0]!.report, describeReport(reports[0]!.report, policy.retention));
      else {
        ctx.emit(
          { repositories: reports.map(({ name, report }) => ({ repository: name, ...report })) },
          reports.map(({ name, report }) => `repository ${name}:\n${describeReport(report, policy.retention)}`).join('\n\n'),
        );
      }
    }),
  );
}

function describeReport(report: ExpireReport, retention: RetentionPolicy): string {
  const tiers = retention.backups;
  const lines = [
    `${report.dryRun ? 'expire --dry-run (nothing is deleted)' : 'expire'} at ${report.now}: keeping ${tiers.daily} daily, ${tiers.weekly} weekly, ` +
      `${tiers.monthly} monthly, ${tiers.yearly} yearly; PITR window ${formatDuration(retention.pitrWindow)} (from ${report.windowStart})`,
    '',
    'backups:',
  ];
  if (report.backups.length === 0) lines.push('  none');
  for (const b of report.backups) lines.push(`  ${b.backupId}  ${b.type.padEnd(4)}  ${b.reason}`);

  lines.push('', report.dryRun ? 'WAL that would be removed:' : 'WAL removed:');
  if (report.walSkipped) lines.push(`  none: ${report.walSkipped}`);
  else if (report.wal.length === 0) lines.push('  none');
  for (const r of report.wal) lines.push(`  timeline ${r.timeline}: ${r.from} .. ${r.to} (${r.files} file${r.files === 1 ? '' : 's'})`);
  if (report.walKeptFrom) lines.push(`  WAL from ${report.walKeptFrom.segment} (start of backup ${report.walKeptFrom.backupId}) on is kept, and every .history file`);
  if (report.walRetained) {
    const r = report.walRetained;
    lines.push(`  ${r.files} more WAL file${r.files === 1 ? ' is' : 's are'} under Object Lock retention and left alone: deletable from ${r.earliest}, all of them from ${r.latest}`);
  }

  const leftovers = report.garbage.filter((g) => g.kind !== 'pending-write');
  if (leftovers.length > 0) {
    lines.push('', 'interrupted uploads (no manifest):');
    for (const g of leftovers) {
      lines.push(`  ${g.kind} ${g.id}: ${g.objects} object${g.objects === 1 ? '' : 's'}, ${formatBytes(g.storedBytes)}, last written ${g.lastModified}: ${g.reason}`);
    }
  }
  const unfinished = report.garbage.filter((g) => g.kind === 'pending-write');
  if (unfinished.length > 0) {
    lines.push('', 'unfinished writes (temp files, multipart uploads never completed):');
    for (const g of unfinished) lines.push(`  ${g.id}: ${formatBytes(g.storedBytes)}, last written ${g.lastModified}: ${g.reason}`);
  }
  if (report.etcdSnapshots.length > 0) {
    lines.push('', 'etcd snapshots:');
    for (const s of report.etcdSnapshots) lines.push(`  ${s.snapshotId}  ${s.reason}`);
  }
  if (report.invalid.length > 0) {
    lines.push('', 'manifests that do not validate (kept; run pgdr verify):');
    for (const i of report.invalid) lines.push(`  ${i.kind} ${i.id}: ${i.problem}`);
  }
  for (const g of report.garbage) {
    if (g.retainedUntil !== null) lines.push(`  (${g.kind} ${g.id} is under Object Lock retention until ${g.retainedUntil}: left alone until then)`);
  }
  if (report.objectLock !== null && report.objectLock.extended.length > 0) {
    lines.push('', 'Object Lock retention extended (kept longer than first locked):');
    for (const e of report.objectLock.extended) lines.push(`  ${e.backupId}: ${e.objects} object(s) retained until ${e.retainUntil}`);
  }
  const retained = report.backups.filter((b) => b.retainedUntil !== null).length;
  if (retained > 0) lines.push('', `${retained} backup(s) the policy lets go are still under Object Lock retention: left alone, deletable at the dates above`);
  const d = report.deleted;
  lines.push(
    '',
    report.dryRun
      ? `dry run: ${report.backups.filter((b) => b.verdict === 'delete' && b.retainedUntil === null).length} backup(s) would be deleted; run without --dry-run to delete`
      : `deleted ${d.backups} backup(s), ${d.walFiles} WAL file(s), ${d.garbage} interrupted upload(s), ${d.etcdSnapshots} etcd snapshot(s)`,
  );
  return lines.join('\n');
}
