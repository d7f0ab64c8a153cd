import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findBackupHistory } from '../../../src/backup/backup-history.js';
import { RepositoryError } from '../../../src/errors.js';
import { parseWalSegmentName } from '../../../src/postgres/wal-file-name.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { createFsStore } from '../../../src/storage/fs-store.js';
import type { ObjectStore } from '../../../src/storage/object-store.js';
import { zstdCompressBuffer } from '../../../src/stream/zstd.js';

const SEG = 16 * 1024 * 1024;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function freshStore(): ObjectStore {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-history-'));
  dirs.push(dir);
  return createFsStore({ root: dir });
}

function historyText(label: string, start: string, startWal: string, stop: string, stopWal: string, stopTimeline = 1): string {
  return [
    `START WAL LOCATION: ${start} (file ${startWal})`,
    `STOP WAL LOCATION: ${stop} (file ${stopWal})`,
    `CHECKPOINT LOCATION: ${start}`,
    'BACKUP METHOD: streamed',
    'BACKUP FROM: primary',
    'START TIME: 2026-11-23 15:25:08 UTC',
    `LABEL: ${label}`,
    'START TIMELINE: 1',
    'STOP TIME: 2026-11-23 15:25:22 UTC',
    `STOP TIMELINE: ${stopTimeline}`,
    '',
  ].join('\n');
}

async function putWal(store: ObjectStore, layout: RepositoryLayout, name: string, text: string): Promise<void> {
  const data = await zstdCompressBuffer(Buffer.from(text), { level: 3 });
  await store.put(layout.walObject(name), { kind: 'buffer', data });
}

describe('findBackupHistory', () => {
  const layout = new RepositoryLayout('main');
  const seg = (name: string) => parseWalSegmentName(name, SEG);

  it("finds the backup's history file by its label among others in the bounded segments", async () => {
    const store = freshStore();
    // Another tool's backup started in the same segment, and the segment itself is archived too.
    await putWal(store, layout, '000000010000000000000088', 'not a history file');
    await putWal(store, layout, '000000010000000000000088.00000028.backup',
      historyText('other tool', '0/88000028', '000000010000000000000088', '0/88000100', '000000010000000000000088'));
    await putWal(store, layout, '000000010000000000000089.00000060.backup',
      historyText('pgdr 20261123T152508Z', '0/89000060', '000000010000000000000089', '0/8A000138', '00000001000000000000008A'));
    const history = await findBackupHistory({
      store, layout, label: 'pgdr 20261123T152508Z',
      from: seg('000000010000000000000088'), to: seg('00000001000000000000008A'),
      segmentSize: SEG, waitMs: 0,
    });
    expect(history).toMatchObject({
      label: 'pgdr 20261123T152508Z',
      startLsn: '0/89000060',
      startWal: '000000010000000000000089',
      stopLsn: '0/8A000138',
      stopWal: '00000001000000000000008A',
      startTimeline: 1,
      stopTimeline: 1,
    });
  });

  it('waits for a history file that arrives late', async () => {
    const store = freshStore();
    const found = findBackupHistory({
      store, layout, label: 'pgdr late',
      from: seg('000000010000000000000004'), to: seg('000000010000000000000004'),
      segmentSize: SEG, waitMs: 10_000, pollMs: 50,
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await putWal(store, layout, '000000010000000000000004.00000028.backup',
      historyText('pgdr late', '0/4000028', '000000010000000000000004', '0/4000100', '000000010000000000000004'));
    await expect(found).resolves.toMatchObject({ stopLsn: '0/4000100' });
  });

  it('fails with the segments it searched when the file never comes', async () => {
    const store = freshStore();
    const search = findBackupHistory({
      store, layout, label: 'pgdr missing',
      from: seg('000000010000000000000004'), to: seg('000000010000000000000005'),
      segmentSize: SEG, waitMs: 0,
    });
    await expect(search).rejects.toThrow(RepositoryError);
    await expect(search).rejects.toThrow(/000000010000000000000004\.\.000000010000000000000005/);
  });

  it('refuses a damaged history file rather than guessing', async () => {
    const store = freshStore();
    await putWal(store, layout, '000000010000000000000004.00000028.backup', 'START WAL LOCATION: nonsense\nLABEL: pgdr x\n');
    await expect(
      findBackupHistory({
        store, layout, label: 'pgdr x',
        from: seg('000000010000000000000004'), to: seg('000000010000000000000004'),
        segmentSize: SEG, waitMs: 0,
      }),
    ).rejects.toThrow(/backup history file has no valid START WAL LOCATION/);
  });
});
