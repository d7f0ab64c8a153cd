/**
 * PostgreSQL's 8 kB page header and data checksum, as the server computes them (storage/checksum_impl.h: 32
 * interleaved FNV-1a lanes over the page read as little-endian 32-bit words, with pd_checksum zeroed, then the block
 * number mixed in). pgdr reads pages itself in the files engine: it checks each checksum as pg_basebackup does, and
 * reads pd_lsn to tell which blocks changed since an earlier backup.
 */
export const BLOCK_SIZE = 8192;

const LANES = 32;
const FNV_PRIME = 16777619;
const BASE_OFFSETS = new Uint32Array([
  0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c, 0xf8d4474f, 0xe39eb970, 0x42c6ae16,
  0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb, 0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2,
  0x304a0979, 0x85aa43d4, 0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
]);
const PD_CHECKSUM_OFFSET = 8;
const PD_UPPER_OFFSET = 14;

const sums = new Uint32Array(LANES);
const WORDS = BLOCK_SIZE / 4;
const CHECKSUM_WORD = PD_CHECKSUM_OFFSET / 4;

/** The checksum PostgreSQL stores in pd_checksum for this page at block number `blockNumber` of its relation. */
export function pageChecksum(page: Buffer, blockNumber: number): number {
  // Word view of the page, with pd_checksum (the low half of word 2) taken as zero.
  const aligned = page.byteOffset % 4 === 0 ? page : Buffer.from(page.subarray(0, BLOCK_SIZE));
  const words = new Uint32Array(aligned.buffer, aligned.byteOffset, BLOCK_SIZE / 4);
  const s = sums;
  s.set(BASE_OFFSETS);
  // The first row holds pd_checksum (the low half of word 2), taken as zero; the rest run without that test.
  for (let lane = 0; lane < LANES; lane++) {
    const value = lane === CHECKSUM_WORD ? words[lane]! & 0xffff0000 : words[lane]!;
    const tmp = s[lane]! ^ value;
    s[lane] = Math.imul(tmp, FNV_PRIME) ^ (tmp >>> 17);
  }
  for (let row = LANES; row < WORDS; row += LANES) {
    for (let lane = 0; lane < LANES; lane++) {
      const tmp = s[lane]! ^ words[row + lane]!;
      s[lane] = Math.imul(tmp, FNV_PRIME) ^ (tmp >>> 17);
    }
  }
  let result = 0;
  for (let lane = 0; lane < LANES; lane++) {
    // Two rounds of zeros, so that the last words of the page affect every bit of the result.
    let s = sums[lane]!;
    for (let round = 0; round < 2; round++) {
      const tmp = s >>> 0;
      s = Math.imul(tmp, FNV_PRIME) ^ (tmp >>> 17);
    }
    result = (result ^ s) >>> 0;
  }
  result = (result ^ blockNumber) >>> 0;
  return (result % 65535) + 1;
}

/** An LSN as its two 32-bit halves, for comparing with pages' pd_lsn without a BigInt per page. */
export interface SplitLsn {
  high: number;
  low: number;
}

export function splitLsn(lsn: bigint): SplitLsn {
  return { high: Number(lsn >> 32n), low: Number(lsn & 0xffffffffn) };
}

/**
 * pd_lsn (xlogid, then xrecoff, each a 32-bit word) >= lsn. Every page a backup reads is compared: a BigInt per page
 * cost an incremental backup measurable garbage collection.
 */
export function pageLsnAtLeast(page: Buffer, lsn: SplitLsn, offset = 0): boolean {
  const high = page.readUInt32LE(offset);
  return high > lsn.high || (high === lsn.high && page.readUInt32LE(offset + 4) >= lsn.low);
}

/** A page the server has extended the relation with but never written: pd_upper is zero. */
export function pageIsNew(page: Buffer, offset = 0): boolean {
  return page.readUInt16LE(offset + PD_UPPER_OFFSET) === 0;
}

export function storedChecksum(page: Buffer, offset = 0): number {
  return page.readUInt16LE(offset + PD_CHECKSUM_OFFSET);
}

/** True for an all-zero page, which PostgreSQL accepts without a checksum. */
export function pageIsZero(page: Buffer, offset = 0): boolean {
  for (let i = offset; i < offset + BLOCK_SIZE; i += 8) {
    if (page.readBigUInt64LE(i) !== 0n) return false;
  }
  return true;
}
