import { describe, expect, it } from 'vitest';
import { planBackupType } from '../../../src/backup/backup-type.js';
import { parseTimelineHistory, rootTimelineHistory } from '../../../src/postgres/timeline-history.js';
import { BackupManifestSchema } from '../../../src/repo/manifest.js';
import { filesManifest } from '../support/files-manifest.js';

const server = { systemIdentifier: '7000000000000000001', major: 15 };
const full = filesManifest({ backupId: '20261120T010000Z' });
const incr1 = filesManifest({ backupId: '20261121T010000Z', type: 'incr', chain: [full.backupId] });
const diff = filesManifest({ backupId: '20261122T010000Z', type: 'diff', chain: [full.backupId] });

describe('planBackupType', () => {
  it('a full backup when asked for one', () => {
    expect(planBackupType({ requested: 'full', catalog: [full], server, history: rootTimelineHistory() }).type).toBe('full');
  });

  it('an incr builds on the newest backup, a diff on the newest full', () => {
    const incr = planBackupType({ requested: 'incr', catalog: [full, incr1, diff], server, history: rootTimelineHistory() });
    expect(incr).toMatchObject({ type: 'incr', chain: [full.backupId, diff.backupId] });
    const d = planBackupType({ requested: 'diff', catalog: [full, incr1, diff], server, history: rootTimelineHistory() });
    expect(d).toMatchObject({ type: 'diff', chain: [full.backupId] });
  });

  it('takes a full backup, and says why, when nothing fits', () => {
    const none = planBackupType({ requested: 'incr', catalog: [], server, history: rootTimelineHistory() });
    expect(none).toMatchObject({ type: 'full', reason: expect.stringMatching(/no earlier files-engine backup/) });
    const other = planBackupType({ requested: 'incr', catalog: [full], server: { ...server, systemIdentifier: '9' }, history: rootTimelineHistory() });
    expect(other.type).toBe('full');
    const major = planBackupType({ requested: 'incr', catalog: [full], server: { ...server, major: 16 }, history: rootTimelineHistory() });
    expect(major.type).toBe('full');
  });

  it('does not build on a backup whose chain has lost a member', () => {
    const plan = planBackupType({ requested: 'incr', catalog: [incr1], server, history: rootTimelineHistory() });
    expect(plan).toMatchObject({ type: 'full', reason: expect.stringMatching(/20261120T010000Z, which the repository no longer holds/) });
  });

  it('does not build on a basebackup-engine backup newer than the last files-engine one', () => {
    const remote = BackupManifestSchema.parse({ ...full, format: 1, backupId: '20261123T010000Z', engine: undefined, chain: undefined, restoredBytes: undefined, fileCount: undefined, objects: [{ name: 'base.tar.zst', bytes: 1, storedBytes: 1, sha256: 'c'.repeat(64), encoding: 'tar+zstd' }] });
    expect(planBackupType({ requested: 'incr', catalog: [full, remote], server, history: rootTimelineHistory() }).type).toBe('full');
  });

  it('builds across a failover only on a backup that ended before the branch point', () => {
    const history = parseTimelineHistory(2, '1\t0/5000000\tno recovery target specified\n');
    const before = filesManifest({ backupId: '20261120T010000Z', stopLsn: '0/4000100' });
    const after = filesManifest({ backupId: '20261120T010000Z', stopLsn: '0/6000100' });
    expect(planBackupType({ requested: 'incr', catalog: [before], server, history }).type).toBe('incr');
    expect(planBackupType({ requested: 'incr', catalog: [after], server, history })).toMatchObject({ type: 'full', reason: expect.stringMatching(/not on the server's timeline 2 path/) });
  });
});
