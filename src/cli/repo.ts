import type { Command } from 'commander';
import { errorMessage, UsageError } from '../errors.js';
import { probeConditionalWrites } from '../repo/store-probe.js';
import type { BucketObjectLock } from '../storage/object-store.js';
import { redactUrl } from '../storage/redact.js';
import { addCommonOptions, type CommandContext } from './context.js';
import type { Action } from './action.js';

/** `pgdr repo ...`: facts about the repository's store itself. */
export function registerRepoCommands(program: Command, action: Action): void {
  const repo = program.command('repo').description('the repository\'s store: what pgdr can rely on it for');
  addCommonOptions(
    repo
      .command('probe')
      .description(
        'ask the store now whether it honours conditional writes (If-None-Match) and record the answer; ' +
          'commands that rely on it probe by themselves once the record is older than storeProbeInterval (24h). ' +
          'Also says whether the bucket has S3 Object Lock, and refuses Object Lock settings on a bucket without it',
      ),
  ).action(
    action(async (ctx: CommandContext) => {
      const { store, layout } = ctx.openRepository();
      try {
        // Asked first: on a bucket with a default retention the probe's own scratch key could not be deleted.
        let bucketLock: BucketObjectLock = { enabled: false, defaultRetention: null };
        let unreadable: string | undefined;
        if (store.location.startsWith('s3://') && store.objectLock) {
          try {
            bucketLock = await store.objectLock();
          } catch (err) {
            // Without Object Lock settings the answer is only informative: a policy that does not grant
            // s3:GetBucketObjectLockConfiguration must not fail the conditional-write probe.
            if (ctx.settings.objectLock !== undefined) throw err;
            unreadable = errorMessage(err);
          }
        }
        if (bucketLock.defaultRetention !== null) {
          throw new UsageError(
            `the bucket of ${store.location} has a default Object Lock retention (${describeDefault(bucketLock.defaultRetention)}): it would lock pgdr's lock objects and state too, which pgdr must rewrite and delete`,
            'remove the default retention and keep Object Lock enabled (e.g. aws s3api put-object-lock-configuration --object-lock-configuration \'{"ObjectLockEnabled":"Enabled"}\'); pgdr sets a retention on each object itself (objectLockMode)',
          );
        }
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
        const wanted = ctx.settings.objectLock;
        const objectLock = { ...bucketLock, pgdr: wanted === undefined ? 'off' : wanted.mode, margin: wanted === undefined ? null : `${Math.round(wanted.marginMs / 1000)}s` };
        const lockLine = unreadable === undefined ? describeObjectLock(bucketLock, wanted?.mode) : `Object Lock: the bucket's configuration could not be read (${unreadable})`;
        ctx.emit(
          { ...record, key: layout.storeProbe(), objectLock },
          `${record.location} ${record.conditionalWrites === 'honoured' ? 'honours' : 'IGNORES'} conditional writes (probed ${record.probedAt}): ${locks}\n${lockLine}`,
        );
        if (wanted !== undefined && !bucketLock.enabled) {
          throw new UsageError(
            `Object Lock is set (${wanted.mode}), but the bucket of ${store.location} has no Object Lock`,
            'create a bucket with Object Lock enabled (docs/configuration.md, "Object Lock") and use it, or unset PGDR_OBJECT_LOCK_MODE / objectLockMode',
          );
        }
      } finally {
        await store.close();
      }
    }),
  );
}

function describeDefault(rule: NonNullable<BucketObjectLock['defaultRetention']>): string {
  const [n, unit] = rule.days !== undefined ? [rule.days, 'day'] : [rule.years ?? 0, 'year'];
  return `${rule.mode}, ${n} ${unit}${n === 1 ? '' : 's'}`;
}

function describeObjectLock(bucket: BucketObjectLock, wanted: string | undefined): string {
  if (!bucket.enabled) return `Object Lock: not enabled on the bucket${wanted === undefined ? '' : `, but pgdr is set to ${wanted}`}`;
  return `Object Lock: enabled on the bucket, no default retention; pgdr writes ${wanted === undefined ? 'no retention (objectLockMode is off)' : `under ${wanted} retention`}`;
}
