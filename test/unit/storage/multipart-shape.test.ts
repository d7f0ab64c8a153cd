import { describe, expect, it } from 'vitest';
import { multipartShape } from '../../../src/storage/s3-store.js';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

describe('multipart part size for a stream of an expected size', () => {
  it('keeps the configured parts when they fit in 10,000 parts, or no estimate is known', () => {
    expect(multipartShape(16 * MIB, 4, undefined)).toEqual({ partSize: 16 * MIB, queueSize: 4 });
    expect(multipartShape(16 * MIB, 4, 0)).toEqual({ partSize: 16 * MIB, queueSize: 4 });
    expect(multipartShape(16 * MIB, 4, 2.4 * GIB)).toEqual({ partSize: 16 * MIB, queueSize: 4 });
    expect(multipartShape(16 * MIB, 4, 140 * GIB)).toEqual({ partSize: 16 * MIB, queueSize: 4 });
  });

  it('grows the parts past ~145 GiB so the object fits, with fewer in flight', () => {
    const shape = multipartShape(16 * MIB, 4, 500 * GIB);
    expect(shape.partSize % MIB).toBe(0);
    expect(shape.partSize * 10_000).toBeGreaterThanOrEqual(500 * GIB * 1.1);
    expect(shape.partSize).toBeLessThan(60 * MIB);
    expect(shape.queueSize).toBe(1);
    expect(multipartShape(16 * MIB, 4, 200 * GIB)).toEqual({ partSize: 23 * MIB, queueSize: 2 });
  });

  it('never drops below one part in flight, however large the estimate', () => {
    const shape = multipartShape(16 * MIB, 4, 4 * 1024 * GIB);
    expect(shape.queueSize).toBe(1);
    expect(shape.partSize * 10_000).toBeGreaterThanOrEqual(4 * 1024 * GIB * 1.1);
  });
});
