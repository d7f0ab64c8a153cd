import { VerificationError } from '../errors.js';
import { entryKey, type FileEntry, type FileListEntry } from '../repo/file-list.js';
import type { BackupManifest, BackupObject } from '../repo/manifest.js';

/**
 * How a files-engine backup (and its chain) comes back, as a list of steps the executor runs: the objects of each
 * layer (one per backup, oldest first), N at a time, each once the objects it comes after are in. A file's whole copy
 * comes from the layer that stored it last; runs of changed blocks from later layers are then written over it in
 * order (so an object of block runs comes after every object holding the previous part of a file it writes); a file
 * whose newest part is a block run is cut to its listed size at the end. A delta restore passes the files it already
 * has right, and those are left out.
 */
export interface FilesRestorePlan {
  /** Directories and links to create (from the final list), directories first. */
  structure: FileListEntry[];
  layers: RestoreLayer[];
  /** Files whose newest part is a block run: their final size. */
  truncate: FileEntry[];
  /** Files the plan writes. */
  files: FileEntry[];
  /** Bytes the written files take. */
  bytes: number;
}

export interface RestoreLayer {
  backupId: string;
  extracts: ObjectExtract[];
}

export interface ObjectExtract {
  backupId: string;
  object: BackupObject;
  /** undefined: the data directory. */
  tablespace?: number;
  /** Members to take, or every member (a full backup's objects, restored whole). */
  members: string[] | 'all';
  /** For a blocks object: where each taken member goes, [file, first block, count]. */
  runs: { member: string; file: FileEntry; first: number; count: number }[];
  /** The extracts (of older layers) holding the previous part of a file this one writes: they must be written first. */
  after: ObjectExtract[];
}

/**
 * @param chain the manifests of every backup the list refers to, the restored one last
 * @param keep entryKeys of files already right in place (delta restore): not written
 * @param inPlace a delta restore: every object's members are named, even when none is kept, so that one of them
 *   (pg_control) can be held back and written last
 */
export function planFilesRestore(chain: readonly BackupManifest[], list: readonly FileListEntry[], keep: ReadonlySet<string> = new Set(), inPlace = keep.size > 0): FilesRestorePlan {
  const byId = new Map(chain.map((m) => [m.backupId, m]));
  const order = chain.map((m) => m.backupId);
  const wanted = new Map<string, { members: Set<string>; runs: ObjectExtract['runs']; tablespace: number | undefined; after: Set<string> }>();
  const objectKey = (backupId: string, name: string) => `${backupId}/${name}`;
  const truncate: FileEntry[] = [];
  const files: FileEntry[] = [];
  let bytes = 0;

  for (const entry of list) {
    if (entry.type !== 'file' || keep.has(entryKey(entry))) continue;
    files.push(entry);
    bytes += entry.size;
    entry.parts.forEach((part, index) => {
      const manifest = byId.get(part.backup);
      const object = manifest?.objects.find((o) => o.name === part.object);
      if (manifest === undefined || object === undefined) {
        throw new VerificationError(
          `the file list names ${part.backup}/${part.object} for ${entry.path}, which is not in the backup's chain`,
          'the file list or a manifest is damaged: run pgdr verify, and restore another backup with --backup-id',
        );
      }
      const expected = index === 0 ? 'files' : 'blocks';
      if (object.content !== expected || (part.blocks === undefined) !== (index === 0)) {
        throw new VerificationError(
          `${entry.path}: part ${index + 1} in ${part.backup}/${part.object} is not a ${index === 0 ? 'whole copy' : 'block run'}`,
          'the file list is damaged: run pgdr verify, and restore another backup with --backup-id',
        );
      }
      const key = objectKey(part.backup, part.object);
      const slot = wanted.get(key) ?? { members: new Set<string>(), runs: [], tablespace: entry.tablespace, after: new Set<string>() };
      if (index > 0) slot.after.add(objectKey(entry.parts[index - 1]!.backup, entry.parts[index - 1]!.object));
      if (part.blocks === undefined) {
        slot.members.add(entry.path);
      } else {
        for (const [first, count] of part.blocks) {
          const member = `${entry.path}@${first}`;
          slot.members.add(member);
          slot.runs.push({ member, file: entry, first, count });
        }
      }
      wanted.set(key, slot);
    });
    if (entry.parts.length > 1) truncate.push(entry);
  }

  const layers: RestoreLayer[] = order.map((backupId) => ({ backupId, extracts: [] }));
  const extracts = new Map<string, ObjectExtract>();
  for (const [key, slot] of wanted) {
    const slash = key.indexOf('/');
    const backupId = key.slice(0, slash);
    const name = key.slice(slash + 1);
    const object = byId.get(backupId)!.objects.find((o) => o.name === name)!;
    const extract: ObjectExtract = {
      backupId,
      object,
      ...(slot.tablespace === undefined ? {} : { tablespace: slot.tablespace }),
      members: [...slot.members].sort(),
      runs: slot.runs,
      after: [],
    };
    extracts.set(key, extract);
    layers[order.indexOf(backupId)]!.extracts.push(extract);
  }
  for (const [key, slot] of wanted) {
    const extract = extracts.get(key)!;
    for (const before of slot.after) {
      const previous = extracts.get(before)!;
      if (order.indexOf(previous.backupId) >= order.indexOf(extract.backupId)) {
        throw new VerificationError(
          `the file list puts a part in ${extract.backupId}/${extract.object.name} after one in ${previous.backupId}/${previous.object.name}, which is not older`,
          'the file list is damaged: run pgdr verify, and restore another backup with --backup-id',
        );
      }
      extract.after.push(previous);
    }
  }
  // An object of the restored backup itself that gives every member is unpacked whole (its directories too).
  const last = layers[layers.length - 1]!;
  for (const extract of last.extracts) if (extract.object.content === 'files' && !inPlace) extract.members = 'all';
  for (const layer of layers) layer.extracts.sort((a, b) => b.object.bytes - a.object.bytes);

  const structure = list.filter((e) => e.type !== 'file');
  return { structure, layers: layers.filter((l) => l.extracts.length > 0), truncate, files, bytes };
}
