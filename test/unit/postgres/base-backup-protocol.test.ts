import { describe, expect, it } from 'vitest';
import { ServiceError, UsageError } from '../../../src/errors.js';
import {
  baseBackupCommand,
  decodeBaseBackupCopyData,
  isInPlaceLocation,
  maxRateKbPerSecond,
  parseBackupPosition,
  parseTablespaceList,
  quoteReplicationString,
} from '../../../src/postgres/base-backup-protocol.js';

/** A CopyData payload: the type byte, then the body. */
function copyData(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([Buffer.from(type, 'latin1'), body]);
}

describe('the BASE_BACKUP command text', () => {
  it('asks for a fast checkpoint, a manifest and a tablespace map, without waiting for the WAL archive', () => {
    expect(baseBackupCommand({ label: 'pgdr 20261123T130149Z' })).toBe(
      "BASE_BACKUP ( LABEL 'pgdr 20261123T130149Z', CHECKPOINT 'fast', WAIT false, MANIFEST 'yes', TABLESPACE_MAP true )",
    );
  });

  it('adds PROGRESS, MAX_RATE and WAIT true when asked', () => {
    expect(baseBackupCommand({ label: 'x', estimateSize: true, maxRateKbPerSecond: 51200, waitForWalArchive: true })).toBe(
      "BASE_BACKUP ( LABEL 'x', CHECKPOINT 'fast', WAIT true, MANIFEST 'yes', TABLESPACE_MAP true, PROGRESS true, MAX_RATE 51200 )",
    );
  });

  it('refuses a MAX_RATE the server would refuse', () => {
    expect(() => baseBackupCommand({ label: 'x', maxRateKbPerSecond: 31 })).toThrow(RangeError);
    expect(() => baseBackupCommand({ label: 'x', maxRateKbPerSecond: 1_048_577 })).toThrow(RangeError);
    expect(() => baseBackupCommand({ label: 'x', maxRateKbPerSecond: 100.5 })).toThrow(RangeError);
  });

  it('quotes a label the way the replication grammar reads it: quotes doubled, backslashes as they are', () => {
    expect(quoteReplicationString("it's")).toBe("'it''s'");
    expect(quoteReplicationString('a\\b')).toBe("'a\\b'");
    expect(() => quoteReplicationString('a\0b')).toThrow(RangeError);
  });
});

describe('--max-rate as BASE_BACKUP reads it', () => {
  it('reads kB/s with an optional k or M suffix', () => {
    expect(maxRateKbPerSecond('1024')).toBe(1024);
    expect(maxRateKbPerSecond('64k')).toBe(64);
    expect(maxRateKbPerSecond('50M')).toBe(51_200);
    expect(maxRateKbPerSecond('1024M')).toBe(1_048_576);
  });

  it('refuses what the server would refuse, and anything else', () => {
    for (const text of ['31', '1025M', '1.5M', '50G', '', 'fast']) expect(() => maxRateKbPerSecond(text)).toThrow(UsageError);
  });
});

describe('CopyData messages of the BASE_BACKUP stream', () => {
  it('reads a new archive with its tablespace location', () => {
    expect(decodeBaseBackupCopyData(copyData('n', Buffer.from('16389.tar\0/srv/ts1\0')))).toEqual({
      type: 'archive',
      name: '16389.tar',
      tablespaceLocation: '/srv/ts1',
    });
  });

  it('reads base.tar, whose location is empty, as no location', () => {
    expect(decodeBaseBackupCopyData(copyData('n', Buffer.from('base.tar\0\0')))).toEqual({ type: 'archive', name: 'base.tar', tablespaceLocation: null });
  });

  it('hands out data as a view of the message, without the type byte', () => {
    const message = copyData('d', Buffer.from('tar bytes'));
    const decoded = decodeBaseBackupCopyData(message);
    expect(decoded).toEqual({ type: 'data', bytes: Buffer.from('tar bytes') });
    expect(decoded.type === 'data' && decoded.bytes.buffer).toBe(message.buffer);
  });

  it('reads the progress count as a 64-bit integer', () => {
    const body = Buffer.alloc(8);
    body.writeBigInt64BE(24_254_464n);
    expect(decodeBaseBackupCopyData(copyData('p', body))).toEqual({ type: 'progress', doneBytes: 24_254_464 });
    body.writeBigInt64BE(5n * 2n ** 40n);
    expect(decodeBaseBackupCopyData(copyData('p', body))).toEqual({ type: 'progress', doneBytes: 5 * 2 ** 40 });
  });

  it('reads the start of the manifest', () => {
    expect(decodeBaseBackupCopyData(copyData('m'))).toEqual({ type: 'manifest' });
  });

  it('refuses what PostgreSQL 15 does not send', () => {
    const cases = [
      Buffer.alloc(0),
      copyData('x', Buffer.from('?')),
      copyData('n', Buffer.from('base.tar')),
      copyData('n', Buffer.from('\0\0')),
      copyData('p', Buffer.alloc(4)),
      copyData('p', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])),
    ];
    for (const message of cases) expect(() => decodeBaseBackupCopyData(message)).toThrow(ServiceError);
  });
});

describe('the result sets of BASE_BACKUP', () => {
  it('reads the start and end positions', () => {
    const set = { columns: ['recptr', 'tli'], rows: [['0/2000028', '1']] };
    expect(parseBackupPosition(set, 'start')).toEqual({ lsn: '0/2000028', timeline: 1 });
    expect(parseBackupPosition({ columns: ['recptr', 'tli'], rows: [['1A/B000100', '3']] }, 'end')).toEqual({ lsn: '1A/B000100', timeline: 3 });
  });

  it('refuses a position it cannot read', () => {
    const bad = [
      { columns: ['recptr', 'tli'], rows: [] },
      { columns: ['recptr', 'tli'], rows: [['0/2000028', '0']] },
      { columns: ['recptr', 'tli'], rows: [['not an lsn', '1']] },
      { columns: ['recptr', 'tli'], rows: [[null, '1']] },
      { columns: ['recptr', 'tli'], rows: [['0/1', '1'], ['0/2', '1']] },
    ];
    for (const set of bad) expect(() => parseBackupPosition(set, 'start')).toThrow(ServiceError);
  });

  it('reads the tablespace list, the data directory last with no oid and no location', () => {
    const set = {
      columns: ['spcoid', 'spclocation', 'size'],
      rows: [
        ['16389', '/srv/ts1', '41'],
        [null, null, '23674'],
      ],
    };
    expect(parseTablespaceList(set)).toEqual([
      { oid: 16389, location: '/srv/ts1', sizeKb: 41 },
      { oid: null, location: null, sizeKb: 23674 },
    ]);
  });

  it('leaves the sizes unknown when the server did not compute them (no PROGRESS)', () => {
    expect(parseTablespaceList({ columns: ['spcoid', 'spclocation', 'size'], rows: [[null, null, null]] })).toEqual([
      { oid: null, location: null, sizeKb: null },
    ]);
  });

  it('refuses an oid or size that is not a count', () => {
    expect(() => parseTablespaceList({ columns: ['spcoid', 'spclocation', 'size'], rows: [['x', '/srv', null]] })).toThrow(ServiceError);
    expect(() => parseTablespaceList({ columns: ['spcoid', 'spclocation', 'size'], rows: [[null, null, '-1']] })).toThrow(ServiceError);
  });
});

describe('in-place tablespaces', () => {
  it('are those whose location is inside the data directory', () => {
    expect(isInPlaceLocation('pg_tblspc/16393')).toBe(true);
    expect(isInPlaceLocation('/srv/ts1')).toBe(false);
  });
});
