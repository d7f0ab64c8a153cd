import cron from 'node-cron';

/**
 * Cron expressions as pgdr accepts them, checked with node-cron's own parser (the one `pgdr schedule` runs them
 * with), plus the questions the scheduler and the CronJob manifests ask of them: is it valid, and when does it fire
 * next after a given moment. The moment is always passed in, never read from the clock, so tests pin it.
 */

export interface CronRules {
  /** Allow node-cron's optional leading seconds field (Kubernetes CronJobs allow only five fields). */
  allowSeconds: boolean;
}

/**
 * null when `expression` is a valid cron expression, else why not (one line). Nicknames such as @daily are refused
 * on purpose: Kubernetes and node-cron disagree on some, and five explicit fields read the same everywhere.
 */
export function cronProblem(expression: string, rules: CronRules = { allowSeconds: true }): string | null {
  if (typeof expression !== 'string' || expression.trim() === '') return 'the expression is empty';
  if (expression.trim().startsWith('@')) return 'nicknames such as @daily are not accepted; write the five fields, e.g. 0 0 * * *';
  const fields = expression.trim().split(/\s+/);
  const allowed = rules.allowSeconds ? [5, 6] : [5];
  if (!allowed.includes(fields.length)) {
    return `expected ${rules.allowSeconds ? '5 fields (or 6 with seconds first)' : '5 fields (minute hour day-of-month month day-of-week)'}, got ${fields.length}`;
  }
  const detail = cron.validateDetailed(expression.trim());
  if (!detail.valid) {
    const first = detail.errors[0];
    return first ? `${first.field}: ${first.message}` : 'not a valid cron expression';
  }
  return null;
}

/** A time zone name the runtime knows (IANA, e.g. UTC, Europe/Berlin); null when valid, else why not. */
export function timeZoneProblem(timeZone: string): string | null {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone }).format(0);
    return null;
  } catch {
    return `${JSON.stringify(timeZone)} is not a time zone this runtime knows (use an IANA name such as UTC or Europe/Berlin)`;
  }
}

/**
 * The next `count` moments after `after` at which `expression` fires in `timeZone`. Walks day by day in the zone:
 * a day qualifies when node-cron's matcher accepts its noon (day-of-month, month and day-of-week are whole-day
 * properties), then its hour/minute/second combinations are tried in order and each one confirmed by the matcher
 * (which drops local times a DST jump skips). Looks at most `horizonDays` ahead.
 */
export function nextRuns(expression: string, timeZone: string, after: Date, count: number, horizonDays = 5 * 366): Date[] {
  const problem = cronProblem(expression) ?? timeZoneProblem(timeZone);
  if (problem !== null) throw new RangeError(`cannot compute runs of ${JSON.stringify(expression)}: ${problem}`);
  const fields = expression.trim().split(/\s+/);
  const dayFields = fields.slice(-3).join(' ');
  const parsed = cron.parse(expression.trim());
  const hours = [...parsed.hour].sort((a, b) => a - b);
  const minutes = [...parsed.minute].sort((a, b) => a - b);
  const seconds = [...parsed.second].sort((a, b) => a - b);

  const noop = (): void => undefined;
  const full = cron.createTask(expression.trim(), noop, { timezone: timeZone });
  const day = cron.createTask(`0 0 12 ${dayFields}`, noop, { timezone: timeZone });
  try {
    const runs: Date[] = [];
    let date = localParts(after, timeZone);
    for (let i = 0; i <= horizonDays && runs.length < count; i++) {
      if (day.match(new Date(zonedToUtc({ ...date, hour: 12, minute: 0, second: 0 }, timeZone)))) {
        for (const hour of hours) {
          for (const minute of minutes) {
            for (const second of seconds) {
              if (runs.length >= count) return runs;
              const at = zonedToUtc({ ...date, hour, minute, second }, timeZone);
              if (at > after.getTime() && full.match(new Date(at))) runs.push(new Date(at));
            }
          }
        }
      }
      date = nextDate(date);
    }
    return runs;
  } finally {
    // createTask registers every task globally; these two were only matchers.
    full.destroy();
    day.destroy();
  }
}

interface LocalTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function localParts(at: Date, timeZone: string): LocalTime {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(timeZone, formatter);
  }
  const parts: Record<string, number> = {};
  for (const p of formatter.formatToParts(at)) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  return {
    year: parts.year ?? 1970,
    month: parts.month ?? 1,
    day: parts.day ?? 1,
    hour: parts.hour ?? 0,
    minute: parts.minute ?? 0,
    second: parts.second ?? 0,
  };
}

/** UTC milliseconds of a wall-clock time in `timeZone` (the later offset wins where a DST change makes two). */
function zonedToUtc(local: LocalTime, timeZone: string): number {
  const asUtc = Date.UTC(local.year, local.month - 1, local.day, local.hour, local.minute, local.second);
  const offset = (ms: number): number => {
    const p = localParts(new Date(ms), timeZone);
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
  };
  const first = offset(asUtc);
  const guess = asUtc - first;
  const second = offset(guess);
  return second === first ? guess : asUtc - second;
}

function nextDate(d: LocalTime): LocalTime {
  const next = new Date(Date.UTC(d.year, d.month - 1, d.day + 1));
  return { year: next.getUTCFullYear(), month: next.getUTCMonth() + 1, day: next.getUTCDate(), hour: 0, minute: 0, second: 0 };
}

/** Whether `expression` fires at `at` (taken to the whole second) in `timeZone`. */
export function cronFiresAt(expression: string, timeZone: string, at: Date): boolean {
  const task = cron.createTask(expression.trim(), () => undefined, { timezone: timeZone });
  try {
    return task.match(new Date(Math.floor(at.getTime() / 1000) * 1000));
  } finally {
    // createTask registers every task globally; this one was only a matcher.
    task.destroy();
  }
}
