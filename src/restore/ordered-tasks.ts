/**
 * Runs tasks `limit` at a time, each only once the tasks it comes after have finished, taking them in the order given
 * whenever one is ready. A restore of a chain uses it instead of a barrier between backups: the changed blocks of one
 * file can be written as soon as that file's older copy is in, while other files' objects are still unpacking.
 * After the first failure no task starts; the rest that are running finish, then that failure is thrown.
 */
export async function runOrdered<T>(tasks: readonly T[], limit: number, after: (task: T) => readonly T[], run: (task: T) => Promise<void>): Promise<void> {
  const position = new Map(tasks.map((task, index) => [task, index]));
  for (const [task, index] of position) {
    for (const before of after(task)) {
      const at = position.get(before);
      if (at === undefined) throw new Error('runOrdered: a task comes after one that is not in the list');
      if (at >= index) throw new Error('runOrdered: a task comes after one listed later (a cycle could never start)');
    }
  }
  const done = new Set<T>();
  const pending = [...tasks];
  let running = 0;
  let failure: { err: unknown } | undefined;
  await new Promise<void>((resolve) => {
    const startReady = (): void => {
      while (failure === undefined && running < Math.max(1, limit)) {
        const index = pending.findIndex((task) => after(task).every((before) => done.has(before)));
        if (index < 0) break;
        const [task] = pending.splice(index, 1) as [T];
        running++;
        run(task).then(
          () => {
            done.add(task);
            finished();
          },
          (err: unknown) => {
            failure ??= { err };
            finished();
          },
        );
      }
      if (running === 0) resolve();
    };
    const finished = (): void => {
      running--;
      startReady();
    };
    startReady();
  });
  if (failure !== undefined) throw failure.err;
}
