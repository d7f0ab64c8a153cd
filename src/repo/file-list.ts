import { z } from 'zod';
import { RepositoryError } from '../errors.js';

/**
 * A files-engine backup's list of every directory, file and link it restores, one JSON object per line
 * (`files.jsonl`, stored zstd-compressed as the backup's `file-list` object). For each file it says where its bytes
 * are: `parts[0]` is a whole copy in some backup's `files` object (this backup's, or an older one's of the chain when
 * the file did not change), and any later parts are runs of changed blocks in `blocks` objects, applied in order.
 * Documented in docs/repository-format.md; a reader validates every line, since the repository is outside input.
 */
const backupId = z.string().regex(/^\d{8}T\d{6}Z$/);
const objectName = z.string().regex(/^[A-Za-z0-9._-]+$/);
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** A relative path inside the data directory or a tablespace: no empty, `.` or `..` parts, no leading slash. */
const relativePath = z
  .string()
  .min(1)
  .refine((p) => !p.startsWith('/') && p.split('/').every((part) => part !== '' && part !== '.' && part !== '..'), 'expected a relative path without . or .. parts');

const PartSchema = z.object({
  backup: backupId,
  object: objectName,
  /** Runs of blocks [first block, count], stored in `object` as members `<path>@<first block>`. Absent: the whole file. */
  blocks: z.array(z.tuple([z.number().int().nonnegative(), z.number().int().positive()])).min(1).optional(),
});

const common = {
  path: relativePath,
  /** The tablespace's oid when the path is relative to a tablespace's directory rather than the data directory. */
  tablespace: z.number().int().positive().optional(),
  /** Permission bits, e.g. 384 (0600). */
  mode: z.number().int().min(0).max(0o7777),
};

export const FileListEntrySchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('file'),
    ...common,
    size: z.number().int().nonnegative(),
    /** Modification time in nanoseconds since 1970 (a decimal string: a JSON number cannot hold it exactly). */
    mtime: z.string().regex(/^\d{1,20}$/),
    /** sha256 of the file as the backup read it. */
    sha256: hex64,
    parts: z.array(PartSchema).min(1),
  }),
  z.object({ type: z.literal('dir'), ...common }),
  z.object({ type: z.literal('link'), ...common, target: z.string().min(1) }),
]);

export type FileListEntry = z.infer<typeof FileListEntrySchema>;
export type FileEntry = Extract<FileListEntry, { type: 'file' }>;
export type FilePart = z.infer<typeof PartSchema>;

/** The order entries are listed in, so that a directory comes before what it holds. */
export function compareEntries(a: Pick<FileListEntry, 'tablespace' | 'path'>, b: Pick<FileListEntry, 'tablespace' | 'path'>): number {
  const ta = a.tablespace ?? 0;
  const tb = b.tablespace ?? 0;
  if (ta !== tb) return ta - tb;
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/** A key that tells entries apart across the data directory and tablespaces. */
export function entryKey(entry: Pick<FileListEntry, 'tablespace' | 'path'>): string {
  return `${entry.tablespace ?? 0}:${entry.path}`;
}

export function serializeFileList(entries: readonly FileListEntry[]): Buffer {
  const sorted = [...entries].sort(compareEntries);
  return Buffer.from(sorted.map((e) => JSON.stringify(FileListEntrySchema.parse(e))).join('\n') + (sorted.length > 0 ? '\n' : ''));
}

/** Parses and validates a file list; `where` names it in errors (e.g. "backup 20261123T010000Z file list"). */
export function parseFileList(text: string, where: string): FileListEntry[] {
  const entries: FileListEntry[] = [];
  const seen = new Set<string>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw damaged(where, i, 'not JSON');
    }
    const parsed = FileListEntrySchema.safeParse(json);
    if (!parsed.success) throw damaged(where, i, parsed.error.issues.map((issue) => `${issue.path.join('.') || 'entry'}: ${issue.message}`).join('; '));
    const key = entryKey(parsed.data);
    if (seen.has(key)) throw damaged(where, i, `${parsed.data.path} is listed twice`);
    seen.add(key);
    entries.push(parsed.data);
  }
  return entries;
}

function damaged(where: string, index: number, problem: string): RepositoryError {
  return new RepositoryError(`${where} line ${index + 1} is not valid: ${problem}`, 'the file list is damaged or from a newer pgdr: restore another backup, and run pgdr verify');
}

/** Bytes the entries take once restored. */
export function restoredSize(entries: readonly FileListEntry[]): number {
  return entries.reduce((sum, e) => sum + (e.type === 'file' ? e.size : 0), 0);
}
