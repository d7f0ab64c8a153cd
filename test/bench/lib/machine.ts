import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { PG_BIN } from './proc.js';

/** What the figures were measured on: every benchmark table in docs/benchmarks.md carries this. */
export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  disk: string;
  kernel: string;
  postgres: string;
  pgbackrest: string;
  zstd: string;
  node: string;
  pgdr: string;
}

async function out(cmd: string, args: string[]): Promise<string> {
  try {
    const r = await execa(cmd, args, { reject: false });
    return String(r.stdout || r.stderr).trim().split('\n')[0] ?? '';
  } catch {
    return 'unknown';
  }
}

export async function machineInfo(benchDir: string, repoRoot: string): Promise<MachineInfo> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const df = (await out('sh', ['-c', `df -hT '${benchDir}' | tail -1`])).split(/\s+/);
  const device = df[0] ?? '?';
  const devName = device.replace(/^\/dev\//, '').replace(/\d+$/, '');
  let kind = '';
  try {
    // Virtual disks (virtio) often claim to be rotational whatever backs them: report the flag, not a verdict.
    kind = `kernel flag rotational=${readFileSync(`/sys/block/${devName}/queue/rotational`, 'utf8').trim()}`;
  } catch {
    kind = 'kind unknown';
  }
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  // Read-only git query: which commit of pgdr was measured.
  const commit = await out('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
  return {
    nproc: cpus().length,
    cpuModel: model,
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    disk: `${device} (${df[1] ?? '?'}, ${df[2] ?? '?'}, ${kind}), bench files under ${benchDir}`,
    kernel: await out('uname', ['-sr']),
    postgres: await out(join(PG_BIN, 'postgres'), ['--version']),
    pgbackrest: await out('pgbackrest', ['version']),
    zstd: (await out('zstd', ['--version'])).replace(/^\*+\s*|\s*\*+$/g, ''),
    node: process.version,
    pgdr: `${pkg.version} (commit ${commit || 'unknown'}, uncommitted changes possible)`,
  };
}

/** The 1-minute load average: the bench machine may be shared, and a busy neighbour shows here. */
export function load1(): number {
  return loadavg()[0] ?? 0;
}
