import cron from 'node-cron';
import type { ScheduledJob } from './config.js';
import type { Trigger } from './scheduler.js';

/**
 * The production trigger: one node-cron task per job, in the schedule's time zone. Overlap is handled by the
 * Scheduler (and across nodes by the repository lock), not by node-cron, so every firing reaches the scheduler and
 * a skipped run is logged. node-cron's own warnings (a missed execution after the event loop stalled) go to `log`.
 */
export class NodeCronTrigger implements Trigger {
  constructor(
    private readonly timeZone: string,
    private readonly log: (record: Record<string, unknown>) => void,
  ) {}

  schedule(job: ScheduledJob, fire: (scheduledAt: Date) => void): { stop(): void } {
    const log = this.log;
    const say = (level: string) => (message: string | Error) =>
      log({ event: 'cron', level, job: job.name, message: message instanceof Error ? message.message : message });
    const task = cron.createTask(job.cron, (context) => fire(context.date), {
      name: `pgdr-${job.name}`,
      timezone: this.timeZone,
      logger: { info: () => undefined, debug: () => undefined, warn: say('warn'), error: say('error') },
    });
    void task.start();
    return {
      stop: () => {
        void task.destroy();
      },
    };
  }
}
