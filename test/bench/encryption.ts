/**
 * The cost of encryption at rest (`npm run bench -- --only encryption`): the same dataset backed up and restored by
 * pgdr into two repositories, one plain and one encrypted with age to two recipients (an operations and an escrow
 * key, as docs/runbooks/key-management.md advises), in alternating order, `rounds` times. Backup: `backup now` (the
 * files engine, since the data directory is local); restore: `restore --target latest` (unpack and recovery
 * settings, no server start). Wall time, CPU of pgdr and its children (GNU time), stored bytes. Target: at most 10%
 * more wall time encrypted than plain.
 */
import { execa } from 'execa';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { load1 } from './lib/machine.js';
import type { BenchServer } from './lib/pg.js';
import { asPg, dropCaches, duBytes, pgTempDir, timedAsPg } from './lib/proc.js';
import { fmtBytes, fmtSeconds, markdownTable, median } from './lib/report.js';
import { PGDR_BIN, PgdrSide } from './pgdr.js';

export const ENCRYPTION_SECTION = 'encryption-cost';
const TARGET_WALL_RATIO = 1.1;

export interface EncryptionRun {
  variant: 'plain' | 'encrypted';
  kind: 'backup' | 'restore';
  round: number;
  wallSeconds: number;
  cpuSeconds: number;
  storedBytes?: number;
  /** The 1-minute load average just before the run: on a shared machine, how much else was running. */
  load1: number;
}

export interface EncryptionBenchResult {
  runs: EncryptionRun[];
  datasetBytes: number;
  recipients: number;
}

interface StepIo {
  rounds: number;
  settle: () => Promise<void>;
  useArchiver: (command: string) => Promise<void>;
  log: (message: string) => void;
}

export async function encryptionStep(server: BenchServer, datasetBytes: number, io: StepIo): Promise<EncryptionBenchResult> {
  const plain = PgdrSide.create(server);
  const encrypted = PgdrSide.create(server);
  const keys = pgTempDir('keys');
  const recipients: string[] = [];
  for (const name of ['ops', 'escrow']) {
    await asPg('age-keygen', ['-o', join(keys, `${name}.key`)]);
    recipients.push((await execa('age-keygen', ['-y', join(keys, `${name}.key`)])).stdout.trim());
  }
  const encEnv = { PGDR_ENCRYPT_RECIPIENTS: recipients.join(','), PGDR_IDENTITY_FILE: join(keys, 'ops.key') };
  const sides = {
    plain: { side: plain, env: plain.env, archive: plain.archiveCommand() },
    encrypted: { side: encrypted, env: { ...encrypted.env, ...encEnv }, archive: `PGDR_ENCRYPT_RECIPIENTS=${recipients.join(',')} ${encrypted.archiveCommand()}` },
  };
  const runs: EncryptionRun[] = [];
  const backupIds = new Map<string, string>();
  for (let round = 1; round <= io.rounds; round++) {
    const order: ('plain' | 'encrypted')[] = round % 2 === 1 ? ['plain', 'encrypted'] : ['encrypted', 'plain'];
    for (const variant of order) {
      const { side, env, archive } = sides[variant];
      await io.useArchiver(archive);
      await io.settle();
      await dropCaches();
      const before = load1();
      const t = await timedAsPg(process.execPath, [PGDR_BIN, 'backup', 'now', '--engine', 'files', '--json'], env, side.root);
      const id = String((JSON.parse(t.stdout) as { backupId: string }).backupId);
      backupIds.set(variant, id);
      const storedBytes = await duBytes(join(side.repoDir, 'bench', 'backups', id));
      runs.push({ variant, kind: 'backup', round, wallSeconds: t.wallSeconds, cpuSeconds: t.cpuSeconds, storedBytes, load1: before });
      io.log(`  ${variant} backup round ${round}: ${fmtSeconds(t.wallSeconds)}, CPU ${fmtSeconds(t.cpuSeconds)}, stored ${fmtBytes(storedBytes)}`);
    }
    for (const variant of order) {
      const { side, env } = sides[variant];
      const target = join(pgTempDir(`${variant}-restore`), 'pgdata');
      await asPg('mkdir', ['-m', '700', target]);
      try {
        await io.settle();
        await dropCaches();
        const before = load1();
        const t = await timedAsPg(process.execPath, [PGDR_BIN, 'restore', '--pgdata', target, '--target', 'latest', '--backup-id', backupIds.get(variant)!, '--json'], env, side.root);
        runs.push({ variant, kind: 'restore', round, wallSeconds: t.wallSeconds, cpuSeconds: t.cpuSeconds, load1: before });
        io.log(`  ${variant} restore round ${round}: ${fmtSeconds(t.wallSeconds)}, CPU ${fmtSeconds(t.cpuSeconds)}`);
      } finally {
        await asPg('rm', ['-rf', target]);
      }
    }
  }
  return { runs, datasetBytes, recipients: recipients.length };
}

/** encrypted / plain wall time of each round that has both. */
export function pairedRatios(runs: readonly EncryptionRun[], kind: EncryptionRun['kind']): number[] {
  const rounds = [...new Set(runs.map((x) => x.round))].sort((a, b) => a - b);
  return rounds.flatMap((round) => {
    const of = (variant: EncryptionRun['variant']) => runs.find((x) => x.round === round && x.kind === kind && x.variant === variant);
    const plain = of('plain');
    const encrypted = of('encrypted');
    return plain && encrypted ? [encrypted.wallSeconds / plain.wallSeconds] : [];
  });
}

export function encryptionSection(r: EncryptionBenchResult, note: string): string {
  const med = (variant: EncryptionRun['variant'], kind: EncryptionRun['kind'], f: (x: EncryptionRun) => number) =>
    median(r.runs.filter((x) => x.variant === variant && x.kind === kind).map(f));
  const rows = (['backup', 'restore'] as const).map((kind) => {
    const wall = [med('plain', kind, (x) => x.wallSeconds), med('encrypted', kind, (x) => x.wallSeconds)] as const;
    const cpu = [med('plain', kind, (x) => x.cpuSeconds), med('encrypted', kind, (x) => x.cpuSeconds)] as const;
    const paired = pairedRatios(r.runs, kind);
    const ratio = median(paired);
    return [
      kind,
      fmtSeconds(wall[0]),
      fmtSeconds(wall[1]),
      paired.map((x) => `${((x - 1) * 100).toFixed(1)}%`).join(', '),
      `**${((ratio - 1) * 100).toFixed(1)}%**`,
      fmtSeconds(cpu[0]),
      fmtSeconds(cpu[1]),
      `${((cpu[1] / cpu[0] - 1) * 100).toFixed(1)}%`,
      ratio <= TARGET_WALL_RATIO ? 'holds' : 'MISSED',
    ];
  });
  const stored = [med('plain', 'backup', (x) => x.storedBytes ?? 0), med('encrypted', 'backup', (x) => x.storedBytes ?? 0)] as const;
  const rounds = Math.max(...r.runs.map((x) => x.round));
  return [
    '## The cost of encryption',
    '',
    note,
    '',
    `test/bench/encryption.ts: the dataset (${fmtBytes(r.datasetBytes)}, pg_database_size) backed up by \`pgdr backup now --engine files\` and ` +
      `restored by \`pgdr restore --target latest\` (unpack, no server start), into a plain repository and into one encrypted to ` +
      `${r.recipients} age recipients, alternating which goes first, ${rounds} round${rounds === 1 ? '' : 's'}, caches dropped ` +
      `before each run; the 1-minute load average before the runs was ${Math.min(...r.runs.map((x) => x.load1)).toFixed(1)} to ` +
      `${Math.max(...r.runs.map((x) => x.load1)).toFixed(1)} on this ${cpus().length}-core machine. CPU is pgdr and all its children (zstd, age, tar). ` +
      'Target: at most 10% more wall time encrypted. Each round runs both variants back to back, so the verdict takes the ' +
      "median of the rounds' own ratios (encrypted / plain of the same round): on this shared machine the load drifts " +
      'between rounds by more than encryption costs, which medians of the two sides taken apart do not cancel.',
    '',
    markdownTable(['step', 'plain wall (median)', 'encrypted wall (median)', 'Δ wall, round by round', 'Δ wall (median of rounds)', 'plain CPU', 'encrypted CPU', 'Δ CPU', '≤ +10% wall'], rows),
    '',
    `Stored: ${fmtBytes(stored[0])} plain, ${fmtBytes(stored[1])} encrypted (age adds a header of about 200 bytes per recipient and ` +
      '16 bytes per 64 KiB chunk).',
    '',
  ].join('\n');
}
