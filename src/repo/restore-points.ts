import { z } from 'zod';
import { RepositoryError, UsageError } from '../errors.js';
import { ObjectExistsError, ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { PGDR_VERSION } from '../version.js';
import type { RepositoryLayout } from './layout.js';

/**
 * Restore points pgdr created (`pgdr restore-point create NAME`), with where they lie. Recovery finds a named point
 * only when it replays it, so without the record the restore planner cannot know which backup starts before it;
 * with it, `--target-name` picks the right backup the way `--target-lsn` does.
 *
 *   <cluster>/restore-points/<name>.json   {"format":1,"name","lsn","timeline","createdAt","pgdrVersion"}
 */
const RestorePointSchema = z.object({
  format: z.literal(1),
  name: z.string().regex(/^[A-Za-z0-9._-]{1,63}$/),
  lsn: z.string().regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/),
  timeline: z.number().int().positive(),
  createdAt: z.iso.datetime(),
  pgdrVersion: z.string(),
});
export type RestorePointRecord = z.infer<typeof RestorePointSchema>;

export const RESTORE_POINT_NAME = /^[A-Za-z0-9._-]{1,63}$/;

export function checkRestorePointName(name: string): string {
  if (!RESTORE_POINT_NAME.test(name)) {
    throw new UsageError(
      `restore point name ${JSON.stringify(name)} is not one pgdr records`,
      'use 1 to 63 letters, digits, dots, dashes and underscores, e.g. before-migration-42',
    );
  }
  return name;
}

export async function writeRestorePoint(store: ObjectStore, layout: RepositoryLayout, record: Omit<RestorePointRecord, 'format' | 'pgdrVersion'>): Promise<RestorePointRecord> {
  const full: RestorePointRecord = { format: 1, ...record, pgdrVersion: PGDR_VERSION };
  try {
    await store.put(layout.restorePoint(record.name), { kind: 'buffer', data: Buffer.from(`${JSON.stringify(full, null, 2)}\n`) }, { ifNoneMatch: true });
  } catch (err) {
    if (err instanceof ObjectExistsError) {
      throw new UsageError(
        `a restore point named ${record.name} is recorded already (the server now holds two; recovery would stop at the first)`,
        'give each restore point its own name, e.g. with the date: before-migration-2026-11-23',
      );
    }
    throw err;
  }
  return full;
}

export async function readRestorePoint(store: ObjectStore, layout: RepositoryLayout, name: string): Promise<RestorePointRecord | null> {
  if (!RESTORE_POINT_NAME.test(name)) return null;
  let raw: Buffer;
  try {
    raw = await store.getBuffer(layout.restorePoint(name));
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return null;
    throw err;
  }
  return parseRestorePoint(raw, name);
}

export function parseRestorePoint(raw: Buffer, name: string): RestorePointRecord {
  let parsed;
  try {
    parsed = RestorePointSchema.safeParse(JSON.parse(raw.toString('utf8')));
  } catch {
    parsed = undefined;
  }
  if (!parsed?.success || parsed.data.name !== name) {
    throw new RepositoryError(`the record of restore point ${name} is damaged`, 'run pgdr verify; restore with --backup-id to choose the backup yourself');
  }
  return parsed.data;
}

export async function listRestorePoints(store: ObjectStore, layout: RepositoryLayout): Promise<RestorePointRecord[]> {
  const out: RestorePointRecord[] = [];
  const prefix = layout.restorePointsPrefix();
  for await (const info of store.list(prefix)) {
    const name = info.key.slice(prefix.length, -'.json'.length);
    if (!info.key.endsWith('.json') || !RESTORE_POINT_NAME.test(name)) continue;
    out.push(parseRestorePoint(await store.getBuffer(info.key), name));
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}
