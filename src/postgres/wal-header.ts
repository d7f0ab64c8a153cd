/**
 * The long page header at the start of every WAL segment file (XLogLongPageHeaderData). pgdr reads the system
 * identifier from it so that `wal push` refuses a segment from another cluster before storing anything, the way
 * pgBackRest's archive-push does.
 */
const XLP_LONG_HEADER = 0x0002;

/** xlp_magic per major version (XLOG_PAGE_MAGIC in xlog_internal.h). */
const MAGIC_TO_MAJOR = new Map<number, number>([
  [0xd110, 15],
  [0xd113, 16],
  [0xd116, 17],
  [0xd118, 18],
]);

export interface WalSegmentHeader {
  magic: number;
  pgMajor: number | undefined;
  timeline: number;
  pageAddress: bigint;
  systemIdentifier: string;
  segmentSize: number;
  blockSize: number;
}

export function readWalSegmentHeader(data: Buffer): WalSegmentHeader | null {
  if (data.length < 40) return null;
  const magic = data.readUInt16LE(0);
  const info = data.readUInt16LE(2);
  if ((info & XLP_LONG_HEADER) === 0) return null;
  return {
    magic,
    pgMajor: MAGIC_TO_MAJOR.get(magic),
    timeline: data.readUInt32LE(4),
    pageAddress: data.readBigUInt64LE(8),
    systemIdentifier: data.readBigUInt64LE(24).toString(),
    segmentSize: data.readUInt32LE(32),
    blockSize: data.readUInt32LE(36),
  };
}
