import { SingleBar, Presets } from 'cli-progress';

/**
 * Progress for long transfers, drawn on stderr only when it is a TTY (CronJobs and --json runs get none:
 * their logs stay clean). Returns an update function and a stop function.
 */
export interface ProgressReporter {
  /** False when nothing is drawn (not a TTY, or not asked for): callers can skip work that only feeds the bar. */
  readonly active: boolean;
  update(bytes: number): void;
  /** The work turned out to be this size (an incremental backup reads less than the database holds). */
  setTotal?(bytes: number): void;
  stop(): void;
}

export function createProgress(label: string, totalBytes: number | undefined, enabled: boolean): ProgressReporter {
  if (!enabled || !process.stderr.isTTY) return { active: false, update: () => undefined, stop: () => undefined };
  let total = totalBytes && totalBytes > 0 ? totalBytes : 0;
  const bar = new SingleBar(
    {
      format: `${label} {bar} {percentage}% | {done} of ~{all} | {rate}/s`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    Presets.shades_classic,
  );
  const started = Date.now();
  bar.start(total || 1, 0, { done: formatBytes(0), all: total ? formatBytes(total) : '?', rate: formatBytes(0) });
  let last = 0;
  return {
    active: true,
    update(bytes) {
      const now = Date.now();
      if (now - last < 200) return;
      last = now;
      const seconds = Math.max((now - started) / 1000, 0.001);
      if (total && bytes > bar.getTotal()) bar.setTotal(bytes);
      bar.update(total ? bytes : 0, { done: formatBytes(bytes), rate: formatBytes(bytes / seconds) });
    },
    setTotal(bytes) {
      if (bytes <= 0) return;
      total = bytes;
      bar.setTotal(bytes);
      bar.update({ all: formatBytes(bytes) });
    },
    stop() {
      bar.stop();
    },
  };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
