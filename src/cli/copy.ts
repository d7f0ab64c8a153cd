import type { Command } from 'commander';
import { repositoryLabel } from '../config/repositories.js';
import { resolveSettings } from '../config/settings.js';
import { UsageError } from '../errors.js';
import { copyRepository } from '../repo/copy.js';
import { createProgress, formatBytes } from '../stream/progress.js';
import { addCommonOptions, type CommandContext, type CommonOptions } from './context.js';
import type { Action } from './action.js';
import { openRepositoryAt } from './repository.js';

interface CopyFlags extends CommonOptions {
  from?: string;
  to?: string;
}

export function registerCopyCommands(program: Command, action: Action): void {
  addCommonOptions(
    program
      .command('copy')
      .description(
        'bring one repository up to date with another: cluster.json, WAL, backups (objects first, manifest last), etcd snapshots, restore points and drill reports; ' +
          'checked on the way, the stored bytes copied as they are; what the target holds already is skipped, so running it again (after a kill, too) finishes the job',
      )
      .requiredOption('--from <name|url>', 'the repository to copy from: a name from the config file, or a URL')
      .requiredOption('--to <name|url>', 'the repository to bring up to date: a name from the config file, or a URL'),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as CopyFlags;
      // Each side resolves as --repo would (a configured name with its own endpoint and credentials, or a URL).
      const from = resolveSettings({ ...flags, repo: flags.from! }).repository!;
      const to = resolveSettings({ ...flags, repo: flags.to! }).repository!;
      if (from.url === to.url && from.s3Endpoint === to.s3Endpoint) {
        throw new UsageError(`--from and --to name the same repository (${repositoryLabel(from)})`, 'name two different repositories');
      }
      const source = openRepositoryAt(from, ctx.settings);
      const target = openRepositoryAt(to, ctx.settings);
      const bar = createProgress(`copy ${repositoryLabel(from)} → ${repositoryLabel(to)}`, undefined, ctx.settings.progress && !ctx.json);
      let drawing = true;
      const progress = {
        setTotal: (bytes: number) => bar.setTotal?.(bytes),
        update: (bytes: number) => bar.update(bytes),
        stop: () => {
          if (drawing) bar.stop();
          drawing = false;
        },
      };
      try {
        const report = await copyRepository({
          from: source.store,
          to: target.store,
          layout: source.layout,
          progress,
          log: (m) => ctx.log(m),
        });
        progress.stop();
        ctx.emit(
          report,
          `copied ${report.copied} object${report.copied === 1 ? '' : 's'} (${formatBytes(report.bytes)}), skipped ${report.skipped} already in ${target.store.location}: ` +
            `${report.backups.copied} backup(s), ${report.walFiles.copied} WAL file(s), ${report.etcdSnapshots.copied} etcd snapshot(s) new`,
        );
      } finally {
        progress.stop();
        await Promise.all([source.store.close(), target.store.close()]);
      }
    }),
  );
}
