import { describe, expect, it } from 'vitest';
import { PgdrError, RepositoryError, ServiceError, UsageError } from '../../src/errors.js';
import { ObjectExistsError, ObjectNotFoundError } from '../../src/storage/object-store.js';

/**
 * The bundled `wal push` and the modules it loads from dist/ on demand each hold a copy of the error classes; an
 * error thrown by one copy must pass `instanceof` against the other (src/errors.ts, isInstanceByName).
 */
describe('error classes across copies of their module', () => {
  it('recognise an error made by another copy as their own kind, and only as that', async () => {
    // A query string makes the test runner load a second, separate instance of each module.
    const secondCopy = (path: string): Promise<unknown> => import(/* @vite-ignore */ `${path}?second-copy`);
    const copy = (await secondCopy('../../src/errors.js')) as typeof import('../../src/errors.js');
    const stores = (await secondCopy('../../src/storage/object-store.js')) as typeof import('../../src/storage/object-store.js');
    expect(copy.UsageError).not.toBe(UsageError);
    const usage = new copy.UsageError('bad flag', 'fix it');
    expect(usage instanceof UsageError).toBe(true);
    expect(usage instanceof PgdrError).toBe(true);
    expect(usage instanceof Error).toBe(true);
    expect(usage instanceof RepositoryError).toBe(false);
    expect(new copy.ServiceError('x', 'y') instanceof ServiceError).toBe(true);
    expect(new UsageError('a', 'b') instanceof copy.PgdrError).toBe(true);
    expect(new stores.ObjectNotFoundError('k') instanceof ObjectNotFoundError).toBe(true);
    expect(new stores.ObjectNotFoundError('k') instanceof ObjectExistsError).toBe(false);
    expect(new stores.ObjectExistsError('k') instanceof ObjectExistsError).toBe(true);
  });

  it('do not take a stranger of the same name for their own', () => {
    class UsageError extends Error {}
    expect(new UsageError('x') instanceof PgdrError).toBe(false);
    expect((null as unknown) instanceof PgdrError).toBe(false);
    expect(('text' as unknown) instanceof PgdrError).toBe(false);
    class LockLike extends RepositoryError {}
    expect(new LockLike('m', 'h') instanceof RepositoryError).toBe(true);
    expect(new LockLike('m', 'h') instanceof LockLike).toBe(true);
    expect(new RepositoryError('m', 'h') instanceof LockLike).toBe(false);
  });
});
