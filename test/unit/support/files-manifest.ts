import { BackupManifestSchema, type BackupManifest, type BackupObject } from '../../../src/repo/manifest.js';

/** A files-engine manifest (format 2) with the fields a test cares about; every other field is valid filler. */
export function filesManifest(spec: {
  backupId: string;
  type?: 'full' | 'diff' | 'incr';
  chain?: string[];
  timeline?: number;
  startLsn?: string;
  stopLsn?: string;
  systemIdentifier?: string;
  pgVersionNum?: number;
  objects?: BackupObject[];
}): BackupManifest {
  const type = spec.type ?? 'full';
  const chain = spec.chain ?? [];
  const at = `${spec.backupId.slice(0, 4)}-${spec.backupId.slice(4, 6)}-${spec.backupId.slice(6, 8)}T${spec.backupId.slice(9, 11)}:${spec.backupId.slice(11, 13)}:${spec.backupId.slice(13, 15)}.000Z`;
  return BackupManifestSchema.parse({
    format: 2,
    backupId: spec.backupId,
    cluster: 'main',
    type,
    engine: 'files',
    ...(type === 'full' ? {} : { reference: chain[chain.length - 1] }),
    chain,
    restoredBytes: 1000,
    fileCount: 1,
    startTime: at,
    stopTime: at,
    startLsn: spec.startLsn ?? '0/3000028',
    stopLsn: spec.stopLsn ?? '0/3000100',
    timeline: spec.timeline ?? 1,
    startWal: '000000010000000000000003',
    stopWal: '000000010000000000000003',
    systemIdentifier: spec.systemIdentifier ?? '7000000000000000001',
    pgVersion: '15.20',
    pgVersionNum: spec.pgVersionNum ?? 150020,
    source: 'localhost:5432',
    compression: { algorithm: 'zstd', level: 3 },
    bytes: 1000,
    storedBytes: 100,
    objects: spec.objects ?? [
      { name: 'files-000001.tar.zst', bytes: 1000, storedBytes: 90, sha256: 'a'.repeat(64), encoding: 'tar+zstd', content: 'files' },
      { name: 'files.jsonl.zst', bytes: 100, storedBytes: 10, sha256: 'b'.repeat(64), encoding: 'zstd', content: 'file-list' },
    ],
    pgdrVersion: '0.1.0',
  });
}
