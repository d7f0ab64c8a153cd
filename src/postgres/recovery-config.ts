import type { RecoveryTarget } from './recovery-target.js';
import { formatLsn } from './lsn.js';

/**
 * The settings a restored data directory needs to recover, rendered for postgresql.auto.conf. Pure, so the exact
 * text pgdr writes is unit-tested; docs/repository-format.md shows the same settings for a restore by hand.
 */
export interface RecoverySettings {
  restoreCommand: string;
  target: RecoveryTarget;
  /** 'off' keeps a scratch or drill copy from archiving a new timeline into the production repository. */
  archiveMode: 'preserve' | 'off';
  port?: number;
  /**
   * The backup holds in-place tablespaces (directories in pg_tblspc, not links): PostgreSQL 15 refuses to finish
   * recovery with one unless allow_in_place_tablespaces is on.
   */
  inPlaceTablespaces?: boolean;
  comment: string;
}

/** Settings pgdr owns in postgresql.auto.conf; stale copies from the source server are removed before appending. */
const OWNED = /^\s*(restore_command|recovery_target\w*|archive_mode|port)\s*=/;
const IN_PLACE = /^\s*allow_in_place_tablespaces\s*=/;

export function quoteConfigValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

export function renderRecoverySettings(settings: RecoverySettings): string[] {
  const lines = [`# ${settings.comment}`, `restore_command = ${quoteConfigValue(settings.restoreCommand)}`];
  const { target } = settings;
  switch (target.kind) {
    case 'time':
      lines.push(`recovery_target_time = ${quoteConfigValue(target.text)}`);
      lines.push(`recovery_target_inclusive = ${target.inclusive ? 'on' : 'off'}`);
      break;
    case 'lsn':
      lines.push(`recovery_target_lsn = ${quoteConfigValue(formatLsn(target.lsn))}`);
      lines.push(`recovery_target_inclusive = ${target.inclusive ? 'on' : 'off'}`);
      break;
    case 'name':
      lines.push(`recovery_target_name = ${quoteConfigValue(target.name)}`);
      break;
    case 'latest':
      break;
  }
  if (target.kind !== 'latest') lines.push(`recovery_target_action = 'promote'`);
  lines.push(`recovery_target_timeline = 'latest'`);
  if (settings.archiveMode === 'off') lines.push('archive_mode = off');
  if (settings.port !== undefined) lines.push(`port = ${settings.port}`);
  if (settings.inPlaceTablespaces) lines.push('allow_in_place_tablespaces = on');
  return lines;
}

/** postgresql.auto.conf with pgdr's settings replacing any earlier ones (a later duplicate would win anyway, but a
 * stale recovery_target_name beside a new recovery_target_time is "multiple recovery targets", a FATAL error). */
export function mergeAutoConf(existing: string, settings: RecoverySettings): string {
  const kept = existing.split('\n').filter((line) => !OWNED.test(line) && !(settings.inPlaceTablespaces && IN_PLACE.test(line)));
  while (kept.length > 0 && kept[kept.length - 1] === '') kept.pop();
  return `${[...kept, ...renderRecoverySettings(settings)].join('\n')}\n`;
}

/** A shell word for restore_command (run by /bin/sh): single-quoted, with embedded quotes closed and escaped. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_./:=@%+-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
