import { z } from 'zod';
import { RepositoryError } from '../errors.js';
import { mapConcurrently, MANIFEST_READS_IN_FLIGHT } from '../repo/concurrent-reads.js';
import { EncryptionSchema, encryptionFor } from '../repo/manifest.js';
import { ageDecryptBuffer, ageEncryptBuffer } from '../stream/age.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { ObjectExistsError, type ObjectStore } from '../storage/object-store.js';

/**
 * The record of one restore drill, stored as <cluster>/drills/<drillId>.json: the proof, month after month, that a
 * restore works and how long it takes. `pgdr drill list` and `pgdr health` read these; they are outside input
 * when read back, so they are validated like manifests.
 */
const CheckResultSchema = z.object({
  name: z.string(),
  ok: z.boolean(),
  detail: z.string(),
});

export const DrillReportSchema = z.object({
  format: z.literal(1),
  drillId: z.string().regex(/^\d{8}T\d{6}Z$/),
  cluster: z.string(),
  /** null when no backup could be chosen (an empty repository). */
  backupId: z.string().nullable(),
  /** The recovery target as restore describes it, e.g. "latest (end of the archived WAL)" or "LSN 0/5000060". */
  target: z.string(),
  /** 'newest': the newest backup to the end of the archive; 'random': a random point within the window. */
  mode: z.enum(['newest', 'random']),
  startedAt: z.iso.datetime(),
  finishedAt: z.iso.datetime(),
  /** Seconds from the start of the restore to the first successful query; null if the copy never became usable. */
  rtoSeconds: z.number().nonnegative().nullable(),
  result: z.enum(['passed', 'failed']),
  /** The WAL the restore needs, checked in the repository before restoring. */
  wal: CheckResultSchema.omit({ name: true }),
  /** The drill policy's SQL checks, in order. */
  checks: z.array(CheckResultSchema),
  amcheck: z.object({ ok: z.boolean(), detail: z.string() }),
  /** Where recovery ended: the promoted timeline and LSN, and the last replayed transaction's time. */
  recovered: z
    .object({ timeline: z.number().int(), lsn: z.string(), lastTransactionAt: z.iso.datetime().nullable() })
    .nullable(),
  /** Why the drill failed, in one line: the first of `failures` (a WAL gap, a recovery that stopped, a failed check). */
  error: z.string().optional(),
  /** Every reason the drill failed, in the order found; empty when it passed. */
  failures: z.array(z.string()).default([]),
  host: z.string(),
  pgdrVersion: z.string(),
  /**
   * A report stored with recipients configured: the free-text details (wal, checks, amcheck, error, failures) read
   * SEALED_DETAIL, and `sealed` holds the whole report, age-encrypted to `encryption.recipients` in ASCII armor.
   * The outcome, times and RTO stay readable, for `pgdr health` and `drill list`, which hold no key.
   */
  encryption: EncryptionSchema.optional(),
  sealed: z.string().startsWith('-----BEGIN AGE ENCRYPTED FILE-----').optional(),
});

export const SEALED_DETAIL = '(sealed: see "sealed")';

export type DrillReport = z.infer<typeof DrillReportSchema>;
export type DrillCheckResult = z.infer<typeof CheckResultSchema>;

/**
 * The copy of a report that is stored when recipients are configured: details the SQL checks or recovery wrote (which
 * may quote table data) replaced by SEALED_DETAIL, the whole report in `sealed`. `jq -r .sealed | age -d -i KEY`
 * reads it back.
 */
export async function sealDrillReport(report: DrillReport, recipients: readonly string[]): Promise<DrillReport> {
  const sealed = (await ageEncryptBuffer(serializeDrillReport(report), recipients, true)).toString('ascii');
  return {
    ...report,
    wal: { ok: report.wal.ok, detail: SEALED_DETAIL },
    checks: report.checks.map((c) => ({ name: c.name, ok: c.ok, detail: SEALED_DETAIL })),
    amcheck: { ok: report.amcheck.ok, detail: SEALED_DETAIL },
    failures: report.failures.map(() => SEALED_DETAIL),
    ...(report.error === undefined ? {} : { error: SEALED_DETAIL }),
    encryption: encryptionFor(recipients)!,
    sealed,
  };
}

/**
 * The whole report a sealed one holds, decrypted with an identity of one of its recipients (`pgdr drill list
 * --identity-file`); a report that is not sealed is returned as it is. The sealed copy is validated like the report
 * around it and must name the same drill; it keeps the `encryption` field, so a reader still sees it was sealed.
 */
export async function unsealDrillReport(report: DrillReport, identityFile: string): Promise<DrillReport> {
  if (report.sealed === undefined) return report;
  const inner = parseDrillReport(await ageDecryptBuffer(Buffer.from(report.sealed, 'ascii'), identityFile, `drill report ${report.drillId}`), report.drillId);
  if (inner.sealed !== undefined) throw new RepositoryError(`drill report ${report.drillId} holds a sealed report inside its sealed report`, 'the report was not written by pgdr; run the drill again (pgdr drill)');
  return { ...inner, ...(report.encryption === undefined ? {} : { encryption: report.encryption }) };
}

export function serializeDrillReport(report: DrillReport): Buffer {
  return Buffer.from(`${JSON.stringify(DrillReportSchema.parse(report), null, 2)}\n`);
}

/** Validates a stored report; the message says what is wrong, for verify and for the onInvalid callback. */
export function parseDrillReport(raw: Buffer, drillId: string): DrillReport {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new RepositoryError(`drill report ${drillId} is not valid JSON`, 'the report is damaged; run the drill again (pgdr drill)');
  }
  const parsed = DrillReportSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RepositoryError(
      `drill report ${drillId} is invalid: ${issue?.path.join('.') || '(top)'}: ${issue?.message}`,
      'the report is damaged or from a newer pgdr; run the drill again (pgdr drill)',
    );
  }
  if (parsed.data.drillId !== drillId) {
    throw new RepositoryError(`drill report ${drillId} names drill ${parsed.data.drillId}`, 'the repository was edited by hand; move the report back where it belongs');
  }
  return parsed.data;
}

export interface ReadDrillReportsOptions {
  /** Called for each report that does not validate; such reports are left out of the result. */
  onInvalid?: (key: string, problem: string) => void;
}

/** Every stored drill report of the cluster, oldest first (drill ids sort by time). */
export async function readDrillReports(store: ObjectStore, layout: RepositoryLayout, options: ReadDrillReportsOptions = {}): Promise<DrillReport[]> {
  const reports: DrillReport[] = [];
  const prefix = layout.drillsPrefix();
  const keys: string[] = [];
  for await (const info of store.list(prefix)) {
    const name = info.key.slice(prefix.length);
    if (/^\d{8}T\d{6}Z\.json$/.test(name)) keys.push(info.key);
  }
  const reads = await mapConcurrently(keys.sort(), MANIFEST_READS_IN_FLIGHT, async (key): Promise<DrillReport | { key: string; problem: string }> => {
    try {
      return parseDrillReport(await store.getBuffer(key), key.slice(prefix.length, -'.json'.length));
    } catch (err) {
      if (!(err instanceof RepositoryError)) throw err;
      return { key, problem: err.message };
    }
  });
  for (const read of reads) {
    if ('problem' in read) options.onInvalid?.(read.key, read.problem);
    else reports.push(read);
  }
  return reports;
}

/** Stores a report under its id, never replacing another drill's; sealed when there are recipients. */
export async function storeDrillReport(store: ObjectStore, layout: RepositoryLayout, report: DrillReport, encryptTo: readonly string[] = []): Promise<string> {
  const key = layout.drillReport(report.drillId);
  const stored = encryptTo.length > 0 ? await sealDrillReport(report, encryptTo) : report;
  try {
    await store.put(key, { kind: 'buffer', data: serializeDrillReport(stored) }, { ifNoneMatch: true, contentType: 'application/json' });
  } catch (err) {
    if (err instanceof ObjectExistsError) {
      throw new RepositoryError(`a drill report ${report.drillId} already exists in ${store.location}`, 'two drills started in the same second; run the drill again', err);
    }
    throw err;
  }
  return key;
}
