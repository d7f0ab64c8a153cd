import { accessSync, constants } from 'node:fs';
import { childEnv } from '../process/child-env.js';
import { delimiter, join } from 'node:path';
import { z } from 'zod';
import { ServiceError } from '../errors.js';
import { runCommand } from '../process/subprocess.js';

/**
 * etcd's own offline snapshot tool: `etcdutl` where installed (etcd 3.5 and later moved the offline commands
 * there), else `etcdctl` with ETCDCTL_API=3 (etcd 3.4). pgdr uses it to read a snapshot's revision and to write
 * restored data directories: the database format and the membership rewrite are etcd's business, not pgdr's.
 */
export interface EtcdSnapshotTool {
  name: 'etcdutl' | 'etcdctl';
  path: string;
}

export function findEtcdSnapshotTool(env: NodeJS.ProcessEnv = process.env): EtcdSnapshotTool {
  const dirs = (env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  for (const name of ['etcdutl', 'etcdctl'] as const) {
    for (const dir of dirs) {
      const path = join(dir, name);
      try {
        accessSync(path, constants.X_OK);
        return { name, path };
      } catch {
        // not here
      }
    }
  }
  throw new ServiceError(
    'neither etcdutl nor etcdctl is on PATH: pgdr needs one to read and restore etcd snapshots',
    'install the etcd client tools (Debian: apt-get install etcd-client; etcd 3.5+: etcdutl from the etcd release)',
  );
}

/**
 * The tool's environment: the basics a tool gets (src/process/child-env.ts), so no ETCDCTL_/ETCDUTL_ setting can
 * redirect it and no credential reaches it (it reads and writes local files only), with API v3.
 */
function toolEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = childEnv('tool');
  env.ETCDCTL_API = '3';
  return env;
}

const SnapshotStatusSchema = z.object({
  hash: z.number().int().nonnegative(),
  revision: z.number().int().nonnegative(),
  totalKey: z.number().int().nonnegative(),
  totalSize: z.number().int().nonnegative(),
});
export type SnapshotFileStatus = z.infer<typeof SnapshotStatusSchema>;

/** `snapshot status -w json` of a snapshot file: its revision and key count, read from the database itself. */
export async function snapshotFileStatus(tool: EtcdSnapshotTool, file: string): Promise<SnapshotFileStatus> {
  const { stdout } = await runCommand(tool.path, ['snapshot', 'status', file, '-w', 'json'], {
    env: toolEnv(),
    timeoutMs: 120_000,
    label: `${tool.name} snapshot status`,
    hint: 'the snapshot database could not be read; take a new snapshot',
  });
  let json: unknown;
  try {
    json = JSON.parse(stdout.toString('utf8'));
  } catch {
    throw new ServiceError(`${tool.name} snapshot status printed no JSON`, `check that ${tool.path} is etcd's ${tool.name}, version 3.4 or later`);
  }
  const parsed = SnapshotStatusSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ServiceError(
      `${tool.name} snapshot status answered unexpectedly: ${issue?.path.join('.') || '(top)'}: ${issue?.message ?? 'invalid'}`,
      `check that ${tool.path} is etcd's ${tool.name}, version 3.4 or later`,
    );
  }
  return parsed.data;
}

export interface SnapshotRestoreTarget {
  name: string;
  /** Must not exist: the tools refuse an existing directory. */
  dataDir: string;
  peerUrls: string[];
  initialCluster: string;
  initialClusterToken: string;
}

/**
 * `snapshot restore` into one new data directory. The hash check stays on (no --skip-hash-check): the tool verifies
 * the snapshot's sha256 trailer once more, after pgdr did.
 */
export async function restoreSnapshotFile(tool: EtcdSnapshotTool, file: string, target: SnapshotRestoreTarget): Promise<void> {
  await runCommand(
    tool.path,
    [
      'snapshot',
      'restore',
      file,
      '--name',
      target.name,
      '--data-dir',
      target.dataDir,
      '--initial-cluster',
      target.initialCluster,
      '--initial-cluster-token',
      target.initialClusterToken,
      '--initial-advertise-peer-urls',
      target.peerUrls.join(','),
    ],
    {
      env: toolEnv(),
      timeoutMs: 600_000,
      label: `${tool.name} snapshot restore (member ${target.name})`,
      hint: 'nothing was written to the target data directories; fix the cause above and run the restore again',
    },
  );
}
