import type { Command } from 'commander';
import { probeConditionalWrites } from '../repo/store-probe.js';
import { redactUrl } from '../storage/redact.js';
import { addCommonOptions, type CommandContext } from './context.js';
import type { Action } from './main.js';

/** `pgdr repo ...`: facts about the repository's store itself. */
export function registerRepoCommands(program: Command, action: Action): void {
  const repo = program.command('repo').description('the repository\'s store: what pgdr can rely on it for');
  addCommonOptions(
    repo
      .command('probe')
      .description(
        'ask the store now whether it honours conditional writes (If-None-Match) and record the answer; ' +
          'commands that rely on it probe by themselves once the record is older than storeProbeInterval (24h)',
      ),
  ).action(
    action(async (ctx: CommandContext) => {
      const { store, layout } = ctx.openRepository();
      try {
        const identity = ctx.settings.s3Endpoint ? `${store.location} at ${redactUrl(ctx.settings.s3Endpoint)}` : store.location;
        const record = await probeConditionalWrites(store, layout, new Date(), identity);
        const locks =
          record.conditionalWrites === 'honoured'
            ? 'locks, cluster.json and WAL never-overwrite rely on it as they are'
            : ctx.settings.etcd.length > 0
              ? 'pgdr takes its locks in etcd and reads WAL back after each push'
              : ctx.settings.acceptUnconditionalWrites
                ? 'locks are NOT exclusive here (--accept-unconditional-writes); WAL is read back after each push'
                : 'backup now, expire and schedule refuse until etcd is configured (--etcd) or the risk is accepted (--accept-unconditional-writes); WAL is read back after each push';
        ctx.emit(
          { ...record, key: layout.storeProbe() },
          `${record.location} ${record.conditionalWrites === 'honoured' ? 'honours' : 'IGNORES'} conditional writes (probed ${record.probedAt}): ${locks}`,
        );
      } finally {
        await store.close();
      }
    }),
  );
}
