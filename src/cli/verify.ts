import type { Command } from 'commander';
import { loadPolicy } from '../config/policy.js';
import { VerificationError } from '../errors.js';
import { formatVerifyReport, verifyRepository } from '../verify/verify-repository.js';
import { addCommonOptions, type CommandContext } from './context.js';
import { repositoryLabel } from '../config/repositories.js';
import type { Action } from './action.js';

export function registerVerifyCommands(program: Command, action: Action): void {
  addCommonOptions(
    program
      .command('verify')
      .description('check every object, manifest, diff/incr backup chain and WAL chain in the repository; exit 0 only when there is no problem, 5 otherwise (docs/runbooks/verify-problems.md)')
      .option('--quick', 'check that objects exist with the recorded size, without reading them for their sha256 (file lists are not matched against their chains either)'),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const { quick } = options as { quick?: boolean };
      const visits = ctx.repositoriesToVisit();
      // Several repositories and none named: each in turn, one document; any problem anywhere fails the command.
      const runs = visits.length > 1 ? visits.map((r) => ({ name: repositoryLabel(r), ctx: ctx.forRepository(r) })) : [{ name: undefined, ctx }];
      const results = [];
      for (const run of runs) {
        const { store, layout } = run.ctx.openRepository();
        try {
          const own = run.ctx.settings.repository;
          const backupRangesOnly = own !== undefined && !own.receives.includes('wal');
          results.push({ name: run.name, location: store.location, cluster: layout.cluster, report: await verifyRepository({
              store,
              layout,
              quick: quick === true,
              backupRangesOnly,
              ...(ctx.settings.identityFile === undefined ? {} : { identityFile: ctx.settings.identityFile }),
              log: (m) => ctx.log(m),
              ...(run.ctx.settings.objectLock !== undefined ? { objectLockRetention: loadPolicy(run.ctx.settings.policy).retention } : {}),
            }),
          });
        } finally {
          await store.close();
        }
      }
      const documents = results.map(({ name, report }) => ({
        ...(name === undefined ? {} : { repository: name }),
        ok: report.ok,
        quick: report.quick,
        checked: report.checked,
        problems: report.problems,
        notes: report.notes,
        objects: report.objects,
        archiveEnd: report.archiveEnd,
        retention: report.retention,
        timings: report.timings,
      }));
      ctx.emit(
        results.length === 1 ? documents[0] : { ok: results.every((r) => r.report.ok), repositories: documents },
        results.map(({ name, location, report }) => (name === undefined ? '' : `repository ${name} (${location}):\n`) + formatVerifyReport(report)).join('\n'),
      );
      const failed = results.filter((r) => !r.report.ok);
      if (failed.length > 0) {
        const problems = failed.reduce((n, r) => n + r.report.problems.length, 0);
        const broken = new Set(failed.flatMap((r) => r.report.problems.flatMap((p) => p.breaks)));
        throw new VerificationError(
          `verify found ${problems} problem${problems === 1 ? '' : 's'} in ${failed.map((r) => r.location).join(', ')} (cluster ${failed[0]!.cluster})` +
            (broken.size > 0 ? `, affecting ${broken.size} backup${broken.size === 1 ? '' : 's'}` : ''),
          'each problem above says what it breaks; take a new base backup (pgdr backup now) if the newest backup is affected, and remove foreign objects by hand',
        );
      }
    }),
  );
}
