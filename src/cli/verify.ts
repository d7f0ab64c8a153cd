import type { Command } from 'commander';
import { loadPolicy } from '../config/policy.js';
import { VerificationError } from '../errors.js';
import { formatVerifyReport, verifyRepository } from '../verify/verify-repository.js';
import { addCommonOptions, type CommandContext } from './context.js';
import type { Action } from './main.js';

export function registerVerifyCommands(program: Command, action: Action): void {
  addCommonOptions(
    program
      .command('verify')
      .description('check every object, manifest, diff/incr backup chain and WAL chain in the repository; exit 0 only when there is no problem, 5 otherwise (docs/runbooks/verify-problems.md)')
      .option('--quick', 'check that objects exist with the recorded size, without reading them for their sha256 (file lists are not matched against their chains either)'),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const { quick } = options as { quick?: boolean };
      const { store, layout } = ctx.openRepository();
      let report;
      try {
        report = await verifyRepository({
          store,
          layout,
          quick: quick === true,
          ...(ctx.settings.identityFile === undefined ? {} : { identityFile: ctx.settings.identityFile }),
          log: (m) => ctx.log(m),
          ...(ctx.settings.objectLock !== undefined ? { objectLockRetention: loadPolicy(ctx.settings.policy).retention } : {}),
        });
      } finally {
        await store.close();
      }
      ctx.emit(
        {
          ok: report.ok,
          quick: report.quick,
          checked: report.checked,
          problems: report.problems,
          notes: report.notes,
          objects: report.objects,
          archiveEnd: report.archiveEnd,
          retention: report.retention,
          timings: report.timings,
        },
        formatVerifyReport(report),
      );
      if (!report.ok) {
        const broken = new Set(report.problems.flatMap((p) => p.breaks));
        throw new VerificationError(
          `verify found ${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} in ${store.location} (cluster ${layout.cluster})` +
            (broken.size > 0 ? `, affecting ${broken.size} backup${broken.size === 1 ? '' : 's'}` : ''),
          'each problem above says what it breaks; take a new base backup (pgdr backup now) if the newest backup is affected, and remove foreign objects by hand',
        );
      }
    }),
  );
}
