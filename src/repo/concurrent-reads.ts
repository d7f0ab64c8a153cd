/**
 * How many small objects (manifests, reports) a catalog reads at once. On S3 each read is a round trip of 20-50 ms,
 * so 300 manifests one at a time cost 6-15 s; 16 in flight bring that under a second without flooding the store.
 */
export const MANIFEST_READS_IN_FLIGHT = 16;

/**
 * `fn` over every item with at most `limit` running, results in the items' order. After the first failure no new
 * item is started; the failure is thrown once the running ones have settled.
 */
export async function mapConcurrently<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  if (failure) throw failure.err;
  return results;
}
