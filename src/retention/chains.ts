import type { BackupManifest } from '../repo/manifest.js';

/**
 * Backup chains as retention sees them. A diff or incr backup of the files engine is restored from its `chain`
 * (the full it builds on, any backups in between, oldest first) plus itself: none of those may go while it stays,
 * and it cannot be restored at all once one of them is gone. Pure: expire, report and the tests share it.
 */

/** Members of a backup's chain that are not among `present` (complete backups): it cannot be restored while any is missing. */
export function missingChainMembers(manifest: Pick<BackupManifest, 'chain'>, present: ReadonlySet<string>): string[] {
  return (manifest.chain ?? []).filter((id) => !present.has(id));
}

/**
 * What keeping `roots` forces retention to keep as well: every chain member of a kept backup, and (should a member's
 * own chain name a backup the root's chain does not, which only a damaged or hand-edited manifest does) the members
 * of that member's chain too. For each backup kept that way, the backups that need it: the roots whose chain names
 * it, or, for the odd transitive case, the member that does. Members absent from `byId` are skipped: they are not
 * there to keep (missingChainMembers names them).
 */
export function chainDependencies(roots: Iterable<string>, byId: ReadonlyMap<string, Pick<BackupManifest, 'backupId' | 'chain'>>): Map<string, string[]> {
  const rootSet = new Set(roots);
  const neededBy = new Map<string, string[]>();
  const need = (id: string, by: string): boolean => {
    if (!byId.has(id) || id === by) return false;
    const list = neededBy.get(id);
    if (list === undefined) {
      neededBy.set(id, [by]);
      return true;
    }
    if (!list.includes(by)) list.push(by);
    return false;
  };
  const pending: string[] = [];
  for (const root of [...rootSet].sort()) {
    for (const id of byId.get(root)?.chain ?? []) if (need(id, root) && !rootSet.has(id)) pending.push(id);
  }
  // Newly kept members whose own chains may reach further; a consistent repository adds nothing here.
  while (pending.length > 0) {
    const member = pending.pop()!;
    for (const id of byId.get(member)?.chain ?? []) {
      if (rootSet.has(id) || neededBy.has(id)) continue;
      if (need(id, member)) pending.push(id);
    }
  }
  for (const list of neededBy.values()) list.sort();
  return neededBy;
}

/** For every id that some backup's chain names, those backups (oldest first): whose restore reads from it. */
export function chainDependants(manifests: readonly Pick<BackupManifest, 'backupId' | 'chain'>[]): Map<string, string[]> {
  const dependants = new Map<string, string[]>();
  for (const m of [...manifests].sort((a, b) => (a.backupId < b.backupId ? -1 : a.backupId > b.backupId ? 1 : 0))) {
    for (const id of m.chain ?? []) {
      const list = dependants.get(id) ?? [];
      list.push(m.backupId);
      dependants.set(id, list);
    }
  }
  return dependants;
}
