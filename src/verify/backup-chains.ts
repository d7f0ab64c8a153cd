import type { FileListEntry } from '../repo/file-list.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { restoreChain, type BackupManifest } from '../repo/manifest.js';
import { describeBackups, type VerifyProblem } from './problems.js';

/**
 * What `pgdr verify` checks of files-engine backup chains, pure. A diff or incr is restored from every backup in
 * its `chain` and then itself, so each of those must be a complete backup that really is the chain the manifest
 * claims (checkChains: manifests only, cheap enough for `verify --quick`), and every part of every file in its file
 * list must name a backup of that chain and an object that backup's manifest lists with the right content
 * (checkFileListParts: needs the file list, read by a full verify only).
 */

export interface ChainCatalog {
  complete: readonly BackupManifest[];
  /** Ids with objects but no manifest. */
  incomplete: readonly { backupId: string }[];
  /** Ids whose manifest does not validate. */
  invalid: readonly { backupId: string }[];
}

/**
 * One `broken-chain` problem per chain member that is not a complete backup, naming every backup that builds on it;
 * one `chain-mismatch` problem per backup whose chain is not what its members say.
 */
export function checkChains(catalog: ChainCatalog, layout: RepositoryLayout): VerifyProblem[] {
  const byId = new Map(catalog.complete.map((m) => [m.backupId, m]));
  const incomplete = new Set(catalog.incomplete.map((b) => b.backupId));
  const invalid = new Set(catalog.invalid.map((b) => b.backupId));
  const absent = new Map<string, string[]>();
  const problems: VerifyProblem[] = [];

  for (const manifest of [...catalog.complete].sort(byBackupId)) {
    const chain = manifest.chain ?? [];
    if (chain.length === 0) continue;
    const wrong: string[] = [];
    if (manifest.reference !== chain[chain.length - 1]) wrong.push(`its reference ${manifest.reference ?? '(none)'} is not the last of its chain`);
    if (manifest.type === 'diff' && chain.length !== 1) wrong.push(`a diff builds on a full backup alone, but its chain has ${chain.length} backups`);
    chain.forEach((id, index) => {
      const member = byId.get(id);
      if (member === undefined) {
        absent.set(id, [...(absent.get(id) ?? []), manifest.backupId]);
        return;
      }
      wrong.push(...memberProblems(manifest, member, chain.slice(0, index), index === 0));
    });
    if (wrong.length > 0) {
      problems.push({
        kind: 'chain-mismatch',
        key: layout.backupManifest(manifest.backupId),
        detail: `backup ${manifest.backupId} (${manifest.type}) cannot be restored as its manifest says: ${wrong.join('; ')}`,
        breaks: [manifest.backupId],
      });
    }
  }

  const broken: VerifyProblem[] = [...absent.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([id, dependants]) => {
      const state = incomplete.has(id)
        ? 'which has objects but no manifest (an interrupted backup, or its manifest was removed)'
        : invalid.has(id)
          ? 'whose manifest does not validate (see its invalid-manifest problem)'
          : 'which is not in the repository (removed by hand, or never copied here)';
      return {
        kind: 'broken-chain' as const,
        key: layout.backupManifest(id),
        detail: `${describeBackups(dependants)} cannot be restored: ${dependants.length === 1 ? 'it builds' : 'they build'} on backup ${id}, ${state}`,
        breaks: [...dependants].sort(),
      };
    });
  return [...broken, ...problems];
}

/** What is wrong with `member` as the chain position it holds in `manifest`'s chain (`before`: the members ahead of it). */
function memberProblems(manifest: BackupManifest, member: BackupManifest, before: readonly string[], first: boolean): string[] {
  const wrong: string[] = [];
  if (member.engine !== 'files') wrong.push(`it builds on ${member.backupId}, a basebackup-engine backup, which lists no files to build on`);
  if (member.systemIdentifier !== manifest.systemIdentifier) wrong.push(`it builds on ${member.backupId}, a backup of another cluster (system identifier ${member.systemIdentifier})`);
  if (first && member.type !== 'full') wrong.push(`its chain starts with ${member.backupId}, a ${member.type} backup, not a full one`);
  if (!first && member.type === 'full') wrong.push(`its chain holds the full backup ${member.backupId} after ${before[before.length - 1]}`);
  const own = member.chain ?? [];
  if (own.length !== before.length || own.some((id, i) => id !== before[i])) {
    wrong.push(`${member.backupId} builds on ${own.length === 0 ? 'nothing' : own.join(', ')}, not on ${before.length === 0 ? 'nothing' : before.join(', ')} as this chain says`);
  }
  return wrong;
}

/**
 * Whether every file of a backup's file list can be assembled from its chain: each part names a backup of the chain
 * (or the backup itself) and an object that backup's manifest lists, a whole copy (`files`) first and block runs
 * (`blocks`) after it, holding the same tablespace as the file; and the list agrees with the manifest's fileCount
 * and restoredBytes. Parts in chain members that are not complete are left to checkChains. One problem per backup
 * at most, giving the count and the first few.
 */
export function checkFileListParts(
  manifest: BackupManifest,
  entries: readonly FileListEntry[],
  complete: ReadonlyMap<string, BackupManifest>,
  layout: RepositoryLayout,
): VerifyProblem | undefined {
  const chain = new Set(restoreChain(manifest));
  const wrong: string[] = [];
  let files = 0;
  let bytes = 0;
  for (const entry of entries) {
    if (entry.type !== 'file') continue;
    files++;
    bytes += entry.size;
    entry.parts.forEach((part, index) => {
      const where = `${entry.tablespace === undefined ? '' : `tablespace ${entry.tablespace} `}${entry.path} part ${index + 1}`;
      if (!chain.has(part.backup)) {
        wrong.push(`${where} is in backup ${part.backup}, which is not in its chain`);
        return;
      }
      const owner = part.backup === manifest.backupId ? manifest : complete.get(part.backup);
      if (owner === undefined) return;
      const object = owner.objects.find((o) => o.name === part.object);
      if (object === undefined) {
        wrong.push(`${where} is in ${part.backup}/${part.object}, which that backup's manifest does not list`);
        return;
      }
      const expected = index === 0 ? 'files' : 'blocks';
      if (object.content !== expected || (part.blocks === undefined) !== (index === 0)) {
        wrong.push(`${where} should be ${index === 0 ? 'a whole copy in a files object' : 'block runs in a blocks object'}, but names ${part.backup}/${part.object} (${object.content ?? 'no content'})`);
        return;
      }
      if (object.tablespace?.oid !== entry.tablespace) {
        wrong.push(`${where} is in ${part.backup}/${part.object}, which holds ${object.tablespace === undefined ? 'data directory' : `tablespace ${object.tablespace.oid}`} files`);
      }
    });
  }
  if (manifest.fileCount !== undefined && manifest.fileCount !== files) wrong.push(`the manifest says ${manifest.fileCount} files, the list has ${files}`);
  if (manifest.restoredBytes !== undefined && manifest.restoredBytes !== bytes) wrong.push(`the manifest says ${manifest.restoredBytes} bytes restored, the list adds up to ${bytes}`);
  if (wrong.length === 0) return undefined;
  const listObject = manifest.objects.find((o) => o.content === 'file-list');
  const shown = wrong.slice(0, 3).join('; ');
  return {
    kind: 'file-list-mismatch',
    key: layout.backupObject(manifest.backupId, listObject?.name ?? 'files.jsonl.zst'),
    detail: `backup ${manifest.backupId} cannot be restored: its file list does not match its chain (${wrong.length} problem${wrong.length === 1 ? '' : 's'}): ${shown}${wrong.length > 3 ? '; …' : ''}`,
    breaks: [manifest.backupId],
  };
}

function byBackupId(a: BackupManifest, b: BackupManifest): number {
  return a.backupId < b.backupId ? -1 : a.backupId > b.backupId ? 1 : 0;
}
