import type { Command } from 'commander';
import { loadPolicy } from '../config/policy.js';
import { VerificationError } from '../errors.js';
import type { DrillReport } from '../verify/drill-report.js';
import { readDrillReports, unsealDrillReport } from '../verify/drill-report.js';
import { identityRecipients } from '../stream/age-buffer.js';
import { runDrill } from '../verify/run-drill.js';
import { addCommonOptions, buildRestoreCommand, type CommandContext } from './context.js';
import { secondsFlag } from './flag-values.js';
import type { Action } from './action.js';

interface DrillFlags {
  randomTarget?: boolean;
  keep?: boolean;
  scratchDir?: string;
  timeout: string;
  heapallindexed?: boolean;
  config?: string;
}

export function registerDrillCommands(program: Command, action: Action): void {
  const drill = addCommonOptions(
    program
      .command('drill')
      .description(
        'restore drill: restore the newest backup (or a random point) into a scratch directory, start it, run pg_amcheck ' +
          'and the policy checks, measure the RTO, remove the copy and store the report; exit 0 passed, 5 failed',
      )
      .option('--random-target', 'restore to a random WAL position within the window instead of the end of the archive')
      .option('--keep', 'keep the scratch directory (stopped) for inspection instead of removing it')
      .option('--scratch-dir <dir>', 'where to make the scratch directory (default: the system temp directory)')
      .option('--timeout <seconds>', 'how long restore, recovery, pg_amcheck and each check may take', '3600')
      .option('--heapallindexed', "pg_amcheck --heapallindexed: also check every heap tuple's index entries (slower)"),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as DrillFlags;
      const timeout = secondsFlag('--timeout', flags.timeout, { positive: true, example: 1800 });
      const policy = loadPolicy(ctx.settings.policy);
      const { store, layout } = ctx.openRepository();
      let outcome;
      try {
        outcome = await runDrill({
          jobs: ctx.settings.jobs,
          ...(ctx.settings.identityFile === undefined ? {} : { identityFile: ctx.settings.identityFile }),
          encryptTo: ctx.settings.encryptRecipients,
          store,
          layout,
          policy: policy.drill,
          restoreCommand: buildRestoreCommand(ctx.settings, flags.config),
          random: flags.randomTarget === true,
          keep: flags.keep === true,
          ...(flags.scratchDir === undefined ? {} : { scratchParent: flags.scratchDir }),
          timeoutMs: timeout * 1000,
          heapallindexed: flags.heapallindexed === true,
          ...(ctx.settings.pgUser === undefined ? {} : { user: ctx.settings.pgUser }),
          log: (m) => ctx.log(m),
        });
      } finally {
        await store.close();
      }
      const { report } = outcome;
      ctx.emit(report, formatDrillReport(report, outcome.keptDir));
      if (report.result === 'failed') {
        throw new VerificationError(
          `restore drill ${report.drillId} failed: ${report.error ?? 'see the report'}`,
          `the report is stored in the repository (pgdr drill list); fix the cause and run pgdr drill again`,
        );
      }
    }),
  );

  addCommonOptions(
    drill.command('list').description('past restore drills, oldest first; with --identity-file, the details of sealed (encrypted) reports too'),
  ).action(
    action(async (ctx: CommandContext) => {
      const { store, layout } = ctx.openRepository();
      let reports: DrillReport[];
      try {
        reports = await readDrillReports(store, layout, { onInvalid: (key, problem) => ctx.log(`skipping ${key}: ${problem}`) });
      } finally {
        await store.close();
      }
      // Outcome, times and RTO are readable without a key; the details of a sealed report need the identity.
      const { identityFile } = ctx.settings;
      if (identityFile !== undefined) {
        const mine = await identityRecipients(identityFile);
        // A report sealed before a key rotation stays sealed rather than failing the whole list.
        const readable = (r: DrillReport): boolean => r.encryption?.recipients.some((k) => mine.includes(k)) === true;
        const others = reports.filter((r) => r.sealed !== undefined && !readable(r)).length;
        if (others > 0) ctx.log(`${others} report(s) are sealed to other recipients than the keys in ${identityFile}; their details stay sealed`);
        reports = await Promise.all(reports.map((r) => (readable(r) ? unsealDrillReport(r, identityFile) : r)));
      } else {
        const sealed = reports.filter((r) => r.sealed !== undefined).length;
        if (sealed > 0) ctx.log(`${sealed} report(s) have their details sealed (encrypted); pass --identity-file (or PGDR_IDENTITY_FILE) to read them`);
      }
      const human =
        reports.length === 0
          ? `no drill reports in ${store.location} for cluster ${layout.cluster}`
          : [
              'drill id           result  backup id          RTO      target',
              ...reports.map(
                (r) =>
                  `${r.drillId}   ${r.result.padEnd(6)}  ${(r.backupId ?? '-').padEnd(17)}  ${(r.rtoSeconds === null ? '-' : `${r.rtoSeconds} s`).padEnd(7)}  ${r.target || '-'}` +
                  (r.error ? `\n    ${r.error}` : ''),
              ),
            ].join('\n');
      ctx.emit(reports, human);
    }),
  );
}

function formatDrillReport(report: DrillReport, keptDir: string | undefined): string {
  const mark = (ok: boolean): string => (ok ? 'ok    ' : 'FAILED');
  const lines = [
    `drill ${report.drillId}: ${report.result.toUpperCase()}`,
    `  backup   ${report.backupId ?? '-'} restored to ${report.target || '-'}`,
    `  RTO      ${report.rtoSeconds === null ? 'never usable' : `${report.rtoSeconds} s to a usable database`}`,
  ];
  if (report.recovered) {
    lines.push(
      `  recovered to timeline ${report.recovered.timeline} at ${report.recovered.lsn}` +
        (report.recovered.lastTransactionAt ? `, last transaction ${report.recovered.lastTransactionAt}` : ''),
    );
  }
  lines.push(`  ${mark(report.wal.ok)} WAL: ${report.wal.detail}`);
  lines.push(`  ${mark(report.amcheck.ok)} amcheck: ${report.amcheck.detail}`);
  for (const check of report.checks) lines.push(`  ${mark(check.ok)} ${check.name}: ${check.detail}`);
  for (const failure of report.failures) lines.push(`  failure: ${failure}`);
  if (keptDir) lines.push(`  scratch copy kept in ${keptDir}`);
  return lines.join('\n');
}
