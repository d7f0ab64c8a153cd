import type { TierCounts } from '../config/policy.js';

/**
 * Grandfather-father-son selection, shared by base backups and etcd snapshots. For each tier with a count N, the
 * items are grouped by calendar period in UTC (day, ISO week, month, year); of the N newest periods that hold an
 * item, the newest item of each is kept and labelled with its tier and period, e.g. "daily 2024-05-03",
 * "weekly 2024-W18", "monthly 2024-04", "yearly 2024".
 *
 * Periods are counted among those that have an item, not back from today: when backups stop for a while, the old
 * ones are still kept rather than aged out by the calendar while nothing replaces them.
 */
export type TierName = keyof TierCounts;

export const TIER_NAMES: readonly TierName[] = ['daily', 'weekly', 'monthly', 'yearly'];

export interface TimedItem {
  id: string;
  /** Decides the item's periods; items are ordered by it (ties by id). */
  time: Date;
}

/** The label of the period `time` falls in for a tier. Labels of one tier sort in time order as strings. */
export function periodLabel(tier: TierName, time: Date): string {
  const iso = time.toISOString();
  switch (tier) {
    case 'daily':
      return iso.slice(0, 10);
    case 'weekly':
      return isoWeekLabel(time);
    case 'monthly':
      return iso.slice(0, 7);
    case 'yearly':
      return iso.slice(0, 4);
  }
}

/**
 * ISO 8601 week (weeks start on Monday; week 1 holds the year's first Thursday), e.g. "2024-W18". The week-year
 * differs from the calendar year around New Year: 2024-12-30 is in 2025-W01.
 */
export function isoWeekLabel(time: Date): string {
  const day = Date.UTC(time.getUTCFullYear(), time.getUTCMonth(), time.getUTCDate());
  const weekday = (new Date(day).getUTCDay() + 6) % 7; // Monday 0 .. Sunday 6
  const thursday = new Date(day + (3 - weekday) * 86_400_000);
  const weekYear = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(weekYear, 0, 1)) / (7 * 86_400_000)) + 1;
  return `${String(weekYear).padStart(4, '0')}-W${String(week).padStart(2, '0')}`;
}

/** Newest first: by time, then by id, so the order never depends on the order the items came in. */
export function newestFirst(a: TimedItem, b: TimedItem): number {
  return b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

/**
 * For every item a tier keeps, the labels of the tiers that keep it ("daily 2024-05-03", ...), in tier order.
 * Items no tier keeps are absent from the map.
 */
export function selectTiers(items: readonly TimedItem[], counts: TierCounts): Map<string, string[]> {
  const sorted = [...items].sort(newestFirst);
  const labels = new Map<string, string[]>();
  for (const tier of TIER_NAMES) {
    const wanted = counts[tier];
    if (wanted <= 0) continue;
    const seen = new Set<string>();
    for (const item of sorted) {
      const period = periodLabel(tier, item.time);
      if (seen.has(period)) continue;
      // The first item met in a period is its newest: the list runs newest first.
      seen.add(period);
      const list = labels.get(item.id) ?? [];
      list.push(`${tier} ${period}`);
      labels.set(item.id, list);
      if (seen.size >= wanted) break;
    }
  }
  return labels;
}
