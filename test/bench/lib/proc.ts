import { accessSync, chmodSync, chownSync, constants, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, execaSync, type Options } from 'execa';
import { onCleanup, removeDir, removeDirSettled } from './cleanup.js';

/** PostgreSQL and its tools refuse to run as root, so everything touching a data directory runs as this user. */
export const PG_OS_USER = 'postgres';
export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

function pgUserIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${PG_OS_USER}:`));
  if (!line) throw new Error(`no ${PG_OS_USER} OS user: install postgresql-15`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * A temp directory owned by postgres (mode 0700), removed at cleanup. Under /var/tmp by default, not /tmp,
 * because the bench writes several GiB and /tmp may be a small tmpfs elsewhere; BENCH_TMPDIR overrides.
 */
export function pgTempDir(label: string): string {
  const base = process.env.BENCH_TMPDIR ?? (process.env.TMPDIR || '/var/tmp');
  const dir = mkdtempSync(join(base, `pgdr-bench-${label}-`));
  const { uid, gid } = pgUserIds();
  chownSync(dir, uid, gid);
  chmodSync(dir, 0o700);
  onCleanup(`temp dir ${dir}`, () => removeDirSettled(dir), () => removeDir(dir));
  return dir;
}

/** A root-owned scratch dir for the bench itself (inputs, outputs), removed at cleanup. */
export function scratchDir(label: string): string {
  const base = process.env.BENCH_TMPDIR ?? (process.env.TMPDIR || tmpdir());
  const dir = mkdtempSync(join(base, `pgdr-bench-${label}-`));
  onCleanup(`temp dir ${dir}`, () => removeDir(dir), () => removeDir(dir));
  return dir;
}

export function chownToPg(path: string): void {
  const { uid, gid } = pgUserIds();
  chownSync(path, uid, gid);
}

/** Runs a command as the postgres OS user; the environment passes through runuser unchanged. */
export async function asPg(
  cmd: string,
  args: string[],
  options: Options & { env?: Record<string, string | undefined> } = {},
): Promise<{ stdout: string; stderr: string }> {
  const result = await execa('runuser', ['-u', PG_OS_USER, '--', cmd, ...args], { ...options, all: false });
  return { stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
}

export interface MemoryPeaks {
  /** Peak RSS (VmHWM) of the command's own main process (e.g. pgdr's node, pgbackrest's main process), KiB. */
  mainKiB: number;
  /** The largest peak RSS of any single descendant of it (pg_basebackup, zstd, pgbackrest local workers), KiB. */
  largestChildKiB: number;
  largestChildName: string;
  /** Peak of the sum of the RSS of the whole tree, sampled every 100 ms, KiB. */
  treeSumKiB: number;
  /** What /usr/bin/time -f %M says: the max RSS of the largest single process in the tree, KiB. */
  timeMaxKiB: number;
}

export interface TimedResult {
  wallSeconds: number;
  /** User + system CPU of the whole process tree (/usr/bin/time %U + %S): less disturbed by a busy machine than wall time. */
  cpuSeconds: number;
  memory: MemoryPeaks;
  stdout: string;
  stderr: string;
}

interface ProcInfo {
  pid: number;
  ppid: number;
  comm: string;
}

function listProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // comm is in parentheses and may itself contain spaces or parentheses: split after the last ')'.
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const rest = stat.slice(close + 2).split(' ');
      out.push({ pid: Number(name), ppid: Number(rest[1]), comm });
    } catch {
      // the process exited while we listed it
    }
  }
  return out;
}

function statusKiB(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+)/.exec(status);
    const hwm = /VmHWM:\s+(\d+)/.exec(status);
    if (!rss || !hwm) return undefined;
    return { rss: Number(rss[1]), hwm: Number(hwm[1]) };
  } catch {
    return undefined;
  }
}

/**
 * Samples the process tree under `rootPid` every 100 ms. VmHWM is the per-process high-water mark, so a late
 * sample still sees an earlier peak; only the last < 100 ms of a process's life can be missed. The wrappers
 * (`time`, `runuser`) are skipped: they are ours, not the measured tool's.
 */
export class TreeMemorySampler {
  private readonly hwm = new Map<number, { comm: string; depth: number; hwm: number }>();
  private treeSum = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly rootPid: number,
    private readonly wrappers: ReadonlySet<string> = new Set(['time', 'runuser', 'sh', 'bash', 'env']),
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private sample(): void {
    const procs = listProcesses();
    const children = new Map<number, ProcInfo[]>();
    for (const p of procs) {
      const list = children.get(p.ppid) ?? [];
      list.push(p);
      children.set(p.ppid, list);
    }
    let sum = 0;
    // Depth counts only non-wrapper processes, so the measured tool's main process has depth 0.
    const walk = (pid: number, depth: number) => {
      for (const child of children.get(pid) ?? []) {
        const wrapper = this.wrappers.has(child.comm) && depth < 0;
        const childDepth = wrapper ? depth : depth + 1;
        const mem = statusKiB(child.pid);
        if (mem && !wrapper) {
          sum += mem.rss;
          const prev = this.hwm.get(child.pid);
          if (!prev || mem.hwm > prev.hwm) this.hwm.set(child.pid, { comm: child.comm, depth: childDepth, hwm: mem.hwm });
        }
        walk(child.pid, childDepth);
      }
    };
    walk(this.rootPid, -1);
    this.treeSum = Math.max(this.treeSum, sum);
  }

  peaks(timeMaxKiB: number): MemoryPeaks {
    let mainKiB = 0;
    let largestChildKiB = 0;
    let largestChildName = '';
    for (const entry of this.hwm.values()) {
      if (entry.depth === 0) mainKiB = Math.max(mainKiB, entry.hwm);
      else if (entry.hwm > largestChildKiB) {
        largestChildKiB = entry.hwm;
        largestChildName = entry.comm;
      }
    }
    return { mainKiB, largestChildKiB, largestChildName, treeSumKiB: this.treeSum, timeMaxKiB };
  }
}

/**
 * Runs `cmd args` as postgres under /usr/bin/time, measuring wall time and memory (see MemoryPeaks).
 * Throws with the tool's stderr when it exits non-zero.
 */
export async function timedAsPg(
  cmd: string,
  args: string[],
  env: Record<string, string | undefined>,
  workDir: string,
  cwd = '/',
): Promise<TimedResult> {
  const timeFile = join(workDir, `time-${process.pid}-${Date.now()}.txt`);
  const started = process.hrtime.bigint();
  const child = execa('/usr/bin/time', ['-f', '%e %M %U %S', '-o', timeFile, 'runuser', '-u', PG_OS_USER, '--', cmd, ...args], {
    env,
    // Only the given environment: what the measured tool sees is exactly what the bench chose.
    extendEnv: false,
    reject: false,
    cwd,
  });
  const sampler = new TreeMemorySampler(child.pid!);
  sampler.start();
  const result = await child;
  sampler.stop();
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const stderr = String(result.stderr ?? '');
  if (result.exitCode !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${result.exitCode}: ${stderr.slice(-2000)}`);
  }
  const timeText = readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '';
  const [, maxKiB, user, sys] = timeText.split(' ');
  const timeMaxKiB = Number(maxKiB ?? 0);
  const cpuSeconds = Number(user ?? 0) + Number(sys ?? 0);
  return { wallSeconds, cpuSeconds, memory: sampler.peaks(timeMaxKiB), stdout: String(result.stdout ?? ''), stderr };
}

/** `du -sb`: bytes on disk of a directory tree (apparent size), for stored-size comparisons. */
export async function duBytes(path: string): Promise<number> {
  const { stdout } = await execa('du', ['-sb', path]);
  return Number(stdout.split(/\s+/)[0]);
}

/** Drops the page cache so each side reads its input from disk, when the kernel lets us (root, not in a jail). */
export async function dropCaches(): Promise<boolean> {
  try {
    await execa('sync');
    await execa('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches']);
    return true;
  } catch {
    return false;
  }
}

export function which(cmd: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = join(dir, cmd);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return cmd;
}

export interface WatchedPeaks {
  /** Processes that matched over the whole watch. */
  processes: number;
  /** The largest peak RSS (VmHWM) of any one matching process, KiB. */
  maxProcessKiB: number;
  /** The peak of the summed RSS of all matching processes and their descendants at one moment, KiB. */
  maxTreeSumKiB: number;
}

/**
 * Watches short-lived processes that are not our children (archive_command runs under PostgreSQL's archiver):
 * every 100 ms, every process whose command line matches `pattern`, with its descendants. A process that lives
 * less than 100 ms can be missed; the figures are lower bounds for those.
 */
export class ProcessWatcher {
  private timer: NodeJS.Timeout | undefined;
  private readonly seen = new Set<number>();
  private maxProcessKiB = 0;
  private maxTreeSumKiB = 0;

  constructor(private readonly pattern: RegExp) {}

  start(): void {
    this.timer = setInterval(() => this.sample(), 100);
  }

  stop(): WatchedPeaks {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return { processes: this.seen.size, maxProcessKiB: this.maxProcessKiB, maxTreeSumKiB: this.maxTreeSumKiB };
  }

  private sample(): void {
    const procs = listProcesses();
    const children = new Map<number, number[]>();
    for (const p of procs) {
      const list = children.get(p.ppid) ?? [];
      list.push(p.pid);
      children.set(p.ppid, list);
    }
    const roots: number[] = [];
    for (const p of procs) {
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        continue;
      }
      if (this.pattern.test(cmdline)) roots.push(p.pid);
    }
    const rootSet = new Set(roots);
    let sum = 0;
    const counted = new Set<number>();
    const walk = (pid: number) => {
      if (counted.has(pid)) return;
      counted.add(pid);
      const mem = statusKiB(pid);
      if (mem) sum += mem.rss;
      for (const c of children.get(pid) ?? []) walk(c);
    };
    for (const pid of roots) {
      // A matching process under another matching one (sh -c → node) is counted once, from the top.
      const mem = statusKiB(pid);
      if (mem) {
        this.seen.add(pid);
        this.maxProcessKiB = Math.max(this.maxProcessKiB, mem.hwm);
      }
      const parent = procs.find((p) => p.pid === pid)?.ppid;
      if (parent === undefined || !rootSet.has(parent)) walk(pid);
    }
    this.maxTreeSumKiB = Math.max(this.maxTreeSumKiB, sum);
  }
}

let clockTicks: number | undefined;

/**
 * CPU seconds used so far by a process tree: utime+stime of every live member, plus cutime+cstime of each (the
 * children it already reaped). For PostgreSQL's postmaster this covers the backends and walsenders that served a
 * backup and the archive_command runs its archiver waited for: the server-side share of a tool's work.
 */
export function treeCpuSeconds(rootPid: number): number {
  clockTicks ??= Number(execaSyncOut('getconf', ['CLK_TCK'])) || 100;
  const procs = listProcesses();
  const children = new Map<number, number[]>();
  for (const p of procs) {
    const list = children.get(p.ppid) ?? [];
    list.push(p.pid);
    children.set(p.ppid, list);
  }
  let ticks = 0;
  const walk = (pid: number) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // Fields 14-17 of stat (utime, stime, cutime, cstime) are 11-14 after the comm field.
      for (const i of [11, 12, 13, 14]) ticks += Number(rest[i] ?? 0);
    } catch {
      return;
    }
    for (const c of children.get(pid) ?? []) walk(c);
  };
  walk(rootPid);
  return ticks / clockTicks;
}

function execaSyncOut(cmd: string, args: string[]): string {
  try {
    return String(execaSync(cmd, args).stdout).trim();
  } catch {
    return '';
  }
}
