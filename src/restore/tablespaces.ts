import { isAbsolute, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import type { BackupObject } from '../repo/manifest.js';

/**
 * Where each tablespace of a backup is restored (pure). Without a mapping, a tablespace goes back to the location it
 * had on the source server; `--tablespace-map OLD=NEW` moves it, OLD naming the tablespace by its old location, its
 * name, or its oid. The restored data directory's tablespace_map then names the new locations, and PostgreSQL makes
 * the pg_tblspc links from it when it starts.
 */
export interface TablespaceMapping {
  from: string;
  to: string;
}

export interface TablespaceTarget {
  oid: number;
  name: string | undefined;
  /** Where it was on the source server. */
  from: string;
  /** Where it is restored. */
  to: string;
  /** Bytes the backup's objects for it unpack to. */
  bytes: number;
}

/** `--tablespace-map OLD=NEW`, each given once. */
export function parseTablespaceMappings(values: readonly string[]): TablespaceMapping[] {
  return values.map((value) => {
    const eq = value.indexOf('=');
    const from = eq <= 0 ? '' : value.slice(0, eq);
    const to = eq <= 0 ? '' : value.slice(eq + 1);
    if (from === '' || to === '') {
      throw new UsageError(`--tablespace-map ${JSON.stringify(value)} is not OLD=NEW`, 'e.g. --tablespace-map /srv/ts1=/restore/ts1 (OLD is the old location, the tablespace name, or its oid)');
    }
    if (!isAbsolute(to)) throw new UsageError(`--tablespace-map ${JSON.stringify(value)}: ${to} is not an absolute path`, 'give the new location as an absolute path');
    return { from, to: resolve(to) };
  });
}

export function planTablespaceTargets(objects: readonly BackupObject[], mappings: readonly TablespaceMapping[]): TablespaceTarget[] {
  // One object per tablespace from the basebackup engine; the files engine may store a tablespace in several.
  const byOid = new Map<number, { tablespace: NonNullable<BackupObject['tablespace']>; bytes: number }>();
  for (const o of objects) {
    if (o.tablespace === undefined) continue;
    const seen = byOid.get(o.tablespace.oid);
    if (seen === undefined) byOid.set(o.tablespace.oid, { tablespace: o.tablespace, bytes: o.bytes });
    else seen.bytes += o.bytes;
  }
  const tablespaces = [...byOid.values()];
  const used = new Set<TablespaceMapping>();
  const targets = tablespaces.map(({ tablespace: ts, bytes }) => {
    const matches = mappings.filter((m) => m.from === ts.location || resolve(m.from) === ts.location || m.from === ts.name || m.from === String(ts.oid));
    if (matches.length > 1) {
      throw new UsageError(`tablespace ${ts.name ?? ts.oid} (${ts.location}) is mapped more than once`, 'give one --tablespace-map per tablespace');
    }
    for (const m of matches) used.add(m);
    return { oid: ts.oid, name: ts.name, from: ts.location, to: matches[0]?.to ?? ts.location, bytes };
  });
  const unknown = mappings.filter((m) => !used.has(m));
  if (unknown.length > 0) {
    const known = tablespaces.map(({ tablespace: t }) => `${t.name ?? t.oid} (${t.location}, oid ${t.oid})`);
    throw new UsageError(
      `--tablespace-map ${unknown.map((m) => m.from).join(', ')} names no tablespace of this backup`,
      known.length === 0 ? 'this backup has no tablespaces besides the data directory' : `its tablespaces: ${known.join('; ')}`,
    );
  }
  const byTarget = new Map<string, TablespaceTarget>();
  for (const target of targets) {
    const other = byTarget.get(target.to);
    if (other !== undefined) {
      throw new UsageError(`tablespaces ${other.name ?? other.oid} and ${target.name ?? target.oid} would both be restored to ${target.to}`, 'map each tablespace to its own directory');
    }
    byTarget.set(target.to, target);
  }
  return targets;
}

/**
 * tablespace_map as PostgreSQL reads it: "<oid> <path>" per line, with backslash, newline and carriage return in the
 * path escaped by a backslash.
 */
export function renderTablespaceMap(targets: readonly TablespaceTarget[]): string {
  return targets.map((t) => `${t.oid} ${t.to.replace(/[\\\n\r]/g, (c) => `\\${c}`)}\n`).join('');
}
