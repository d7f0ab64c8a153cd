import { createWriteStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { NotFoundError, VerificationError } from '../errors.js';
import { parseWalFileName } from '../postgres/wal-file-name.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { zstdDecompressStage } from '../stream/zstd.js';

/**
 * restore_command. Exit 1 (NotFoundError) means "not in the archive", which PostgreSQL treats as the end of the
 * archive; every other failure must be a different code so recovery stops instead of ending early on a network
 * blip. The file appears at DEST only complete: written beside it, fsynced, then renamed.
 */
export async function fetchWal(name: string, destination: string, store: ObjectStore, layout: RepositoryLayout): Promise<void> {
  parseWalFileName(name);
  const key = layout.walObject(name);
  let source;
  try {
    source = await store.get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) {
      throw new NotFoundError(`${name} is not in ${store.location}`, 'normal at the end of the archive; otherwise check --repo and --cluster');
    }
    throw err;
  }
  const final = resolve(destination);
  const temp = `${final}.pgdr-${process.pid}`;
  try {
    await pipeline(source, zstdDecompressStage(), createWriteStream(temp, { mode: 0o600 }));
    const handle = await open(temp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, final);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    if (err instanceof Error && /zstd/.test(err.message)) {
      throw new VerificationError(`stored WAL file ${name} does not decompress: ${err.message}`, 'the archive copy is damaged; run pgdr verify', err);
    }
    throw err;
  }
}
