import { describe, expect, it } from 'vitest';
import { parseZstdCounts } from '../../../src/postgres/basebackup.js';

describe("zstd's verbose summary, where pgdr reads the tar's size", () => {
  it('reads zstd 1.5 byte counts', () => {
    const stderr = [
      '*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***',
      'Decompression will require 2097152 B of memory',
      '/*stdin*\\            : 22.53%   (2450748928 B => 552121875 B, /*stdout*\\) ',
      '/*stdin*\\            : Completed in 8.14 sec  (cpu load : 129%)',
    ].join('\n');
    expect(parseZstdCounts(stderr)).toEqual({ inputBytes: 2450748928, outputBytes: 552121875 });
  });

  it('reads zstd 1.4 byte counts', () => {
    expect(parseZstdCounts('/*stdin*\\            : 22.53%   (2450748928 => 552121875 bytes, /*stdout*\\) \n')).toEqual({
      inputBytes: 2450748928,
      outputBytes: 552121875,
    });
  });

  it('says nothing when the summary is in human units or missing, rather than guessing', () => {
    expect(parseZstdCounts('/*stdin*\\            : 22.53%   (  2.28 GiB =>    527 MiB, /*stdout*\\) ')).toBeUndefined();
    expect(parseZstdCounts('')).toBeUndefined();
  });
});
