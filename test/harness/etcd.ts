import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { killQuietly, registerCleanup } from './cleanup.js';
import { findOnPath, testPath } from './preflight.js';
import { freePort } from './ports.js';
import { makeTempDir, removeTempDir } from './temp.js';

/**
 * Real etcd 3.4 clusters on 127.0.0.1 for the integration tests: every member on free ports, in a temp directory,
 * stopped by the cleanup registry even when a test fails. etcd runs fine as root, so no user switch here.
 */

export interface EtcdMember {
  readonly name: string;
  /** http://127.0.0.1:PORT */
  readonly clientUrl: string;
  /** http://127.0.0.1:PORT */
  readonly peerUrl: string;
  readonly dataDir: string;
  /** The etcd process id while it runs. */
  pid(): number | undefined;
  /** SIGKILL, as a machine crash would; the data directory stays and start() brings the member back. */
  kill(): Promise<void>;
  /** Starts the member on its ports and data directory and waits until it reports healthy (needs a quorum). */
  start(): Promise<void>;
  /** SIGTERM, SIGKILL after 10 s; the data directory stays. */
  stop(): Promise<void>;
  /** The last lines of this member's log. */
  logTail(lines?: number): string;
}

export interface EtcdCluster {
  readonly name: string;
  readonly token: string;
  /** Client URLs of every member, http://127.0.0.1:PORT. */
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /** m1=http://127.0.0.1:P1,m2=... as etcd's --initial-cluster takes it. */
  readonly initialCluster: string;
  /** Stops every member and removes the temp directory the harness made (not data directories a caller gave). */
  stop(): Promise<void>;
  /** What pgdr reads: PGDR_ETCD with every client URL. */
  env(): { PGDR_ETCD: string };
}

export interface EtcdClusterOptions {
  /** Default 3. */
  members?: number;
  /** Names the temp directory, the member names (<name>-1, ...) and the default token. Default "etcd". */
  name?: string;
  /** --initial-cluster-token; default a random one, so two clusters of one test never merge. */
  token?: string;
  /** Also serve the v2 API (--enable-v2), e.g. for Patroni's `etcd:` DCS section. Default false. */
  enableV2?: boolean;
}

/** Where a member lives: its ports are free ones unless given. */
export interface EtcdMemberSpec {
  name: string;
  dataDir: string;
  clientPort?: number;
  peerPort?: number;
}

export interface EtcdMemberAddress {
  name: string;
  dataDir: string;
  clientPort: number;
  peerPort: number;
  clientUrl: string;
  peerUrl: string;
}

const HEALTH_DEADLINE_MS = 30_000;
const LOG_TAIL_LINES = 30;

/** The etcd server binary; a missing one fails with the command that installs it. */
export function etcdBinary(): string {
  const found = findOnPath(process.env.PGDR_ETCD_BIN ?? 'etcd', testPath());
  if (found === undefined) throw new Error('etcd server not found on PATH: run bash test/setup/ensure-deps.sh');
  return found;
}

/**
 * Picks free, pairwise distinct client and peer ports for `specs` (keeping any port a spec names). A restored
 * cluster needs its addresses before its data directories exist: `pgdr etcd restore` writes the peer URLs into them.
 */
export async function allocateEtcdMembers(specs: EtcdMemberSpec[]): Promise<EtcdMemberAddress[]> {
  const taken = new Set<number>();
  for (const spec of specs) {
    if (spec.clientPort !== undefined) taken.add(spec.clientPort);
    if (spec.peerPort !== undefined) taken.add(spec.peerPort);
  }
  const pick = async (given: number | undefined): Promise<number> => {
    if (given !== undefined) return given;
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
  };
  const addresses: EtcdMemberAddress[] = [];
  for (const spec of specs) {
    const clientPort = await pick(spec.clientPort);
    const peerPort = await pick(spec.peerPort);
    addresses.push({
      name: spec.name,
      dataDir: spec.dataDir,
      clientPort,
      peerPort,
      clientUrl: `http://127.0.0.1:${clientPort}`,
      peerUrl: `http://127.0.0.1:${peerPort}`,
    });
  }
  return addresses;
}

export function initialClusterOf(members: ReadonlyArray<{ name: string; peerUrl: string }>): string {
  return members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
}

/** Starts a new cluster of fresh members and waits until every member reports healthy. */
export async function startEtcdCluster(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const count = options.members ?? 3;
  if (!Number.isInteger(count) || count < 1) throw new Error(`startEtcdCluster: members must be a positive integer, got ${count}`);
  const name = options.name ?? 'etcd';
  const token = options.token ?? `pgdr-${name}-${randomBytes(4).toString('hex')}`;
  const dir = makeTempDir(`etcd-${name}`);
  const specs = Array.from({ length: count }, (_, i) => ({ name: `${name}-${i + 1}`, dataDir: join(dir, `${name}-${i + 1}.etcd`) }));
  return launchCluster(name, token, dir, true, await allocateEtcdMembers(specs), options.enableV2 ?? false);
}

/**
 * Starts a cluster on existing data directories, e.g. the ones `pgdr etcd restore` wrote. The membership comes
 * from the data directories themselves, so each member's peer port must be the one the restore was told (give
 * clientPort and peerPort, or the addresses from allocateEtcdMembers). The data directories stay the caller's.
 */
export async function startEtcdFromDataDirs(
  members: EtcdMemberSpec[],
  options: { name?: string; token?: string; enableV2?: boolean } = {},
): Promise<EtcdCluster> {
  if (members.length === 0) throw new Error('startEtcdFromDataDirs: no members given');
  for (const m of members) {
    if (!existsSync(join(m.dataDir, 'member'))) throw new Error(`startEtcdFromDataDirs: ${m.dataDir} holds no etcd member (no member/ directory)`);
  }
  const name = options.name ?? 'etcd-restored';
  const dir = makeTempDir(`etcd-${name}`);
  return launchCluster(name, options.token ?? 'unknown', dir, false, await allocateEtcdMembers(members), options.enableV2 ?? false);
}

async function launchCluster(
  name: string,
  token: string,
  dir: string,
  fresh: boolean,
  addresses: EtcdMemberAddress[],
  enableV2: boolean,
): Promise<EtcdCluster> {
  const initialCluster = initialClusterOf(addresses);
  const members = addresses.map((a) => new LocalEtcdMember(a, dir, { initialCluster, token, fresh, enableV2 }));
  try {
    // Together: a member of a new cluster waits for its peers before it can elect a leader.
    for (const m of members) m.launch();
    await Promise.all(members.map((m) => m.waitHealthy()));
  } catch (err) {
    await stopInTurn(members);
    await removeTempDir(dir);
    throw err;
  }
  return {
    name,
    token,
    endpoints: members.map((m) => m.clientUrl),
    members,
    initialCluster,
    stop: async () => {
      await stopInTurn(members);
      await removeTempDir(dir);
    },
    env: () => ({ PGDR_ETCD: members.map((m) => m.clientUrl).join(',') }),
  };
}

/**
 * One member after the other: members stopped all at once spend seconds trying to hand leadership to peers that are
 * going away too (measured: 8 s for three at once, 0.15 s in turn).
 */
async function stopInTurn(members: readonly EtcdMember[]): Promise<void> {
  for (const member of members) await member.stop();
}

class LocalEtcdMember implements EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  private readonly logFile: string;
  private readonly home: string;
  private child: ChildProcess | undefined;
  private exited: string | undefined;
  private unregister: (() => void) | undefined;

  constructor(
    address: EtcdMemberAddress,
    dir: string,
    private readonly cluster: { initialCluster: string; token: string; fresh: boolean; enableV2: boolean },
  ) {
    this.name = address.name;
    this.clientUrl = address.clientUrl;
    this.peerUrl = address.peerUrl;
    this.dataDir = address.dataDir;
    this.logFile = join(dir, `${address.name}.log`);
    this.home = dir;
  }

  pid(): number | undefined {
    return this.child?.pid;
  }

  logTail(lines = LOG_TAIL_LINES): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Spawns etcd without waiting for health (a new cluster's members must all be up before any is healthy). */
  launch(): void {
    if (this.child !== undefined) throw new Error(`etcd member ${this.name} is already running`);
    const args = [
      '--name', this.name,
      '--data-dir', this.dataDir,
      '--listen-client-urls', this.clientUrl,
      '--advertise-client-urls', this.clientUrl,
      '--listen-peer-urls', this.peerUrl,
      '--initial-advertise-peer-urls', this.peerUrl,
      '--initial-cluster', this.cluster.initialCluster,
      '--initial-cluster-token', this.cluster.token,
      // Ignored once the data directory holds a member (a restart, a restored directory).
      '--initial-cluster-state', 'new',
      '--logger', 'zap',
      '--log-outputs', 'stderr',
      // Loopback on a busy 2-core machine: a short heartbeat with a roomy election timeout avoids spurious elections.
      '--heartbeat-interval', '100',
      '--election-timeout', '1500',
    ];
    if (this.cluster.enableV2) args.push('--enable-v2=true');
    const log = openSync(this.logFile, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(etcdBinary(), args, {
        // Nothing from the test process's own ETCD_* variables may configure the member.
        env: { PATH: testPath(), HOME: this.home, LANG: 'C.UTF-8' },
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log);
    }
    this.child = proc;
    this.exited = undefined;
    proc.once('exit', (code, signal) => {
      this.exited = `exited with ${signal ?? `code ${code}`}`;
    });
    proc.once('error', (err) => {
      this.exited = `could not start: ${err.message}`;
    });
    const pid = proc.pid;
    this.unregister?.();
    this.unregister = registerCleanup(`etcd member ${this.name} (${this.clientUrl})`, () => this.stop(), () => killQuietly(pid));
  }

  async waitHealthy(deadlineMs = HEALTH_DEADLINE_MS): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    let last = 'no answer yet';
    for (;;) {
      if (this.exited !== undefined) {
        throw new Error(`etcd member ${this.name} ${this.exited} before it was healthy on ${this.clientUrl}; its log ends with:\n${this.logTail()}`);
      }
      try {
        const response = await fetch(`${this.clientUrl}/health`, { signal: AbortSignal.timeout(2_000) });
        const body = (await response.json()) as { health?: unknown; reason?: unknown };
        // "true" only once the member sees a leader: a quorum is up.
        if (response.ok && body.health === 'true') return;
        last = JSON.stringify(body);
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `etcd member ${this.name} was not healthy on ${this.clientUrl}/health within ${deadlineMs / 1000} s (last: ${last}); its log ends with:\n${this.logTail()}`,
        );
      }
      await sleep(100);
    }
  }

  async start(): Promise<void> {
    this.launch();
    await this.waitHealthy();
  }

  async kill(): Promise<void> {
    const proc = this.child;
    this.child = undefined;
    if (proc === undefined) return;
    killQuietly(proc.pid, 'SIGKILL');
    await waitForExit(proc, 10_000);
  }

  async stop(): Promise<void> {
    const proc = this.child;
    this.child = undefined;
    this.unregister?.();
    this.unregister = undefined;
    if (proc === undefined) return;
    killQuietly(proc.pid, 'SIGTERM');
    await waitForExit(proc, 10_000);
    if (proc.exitCode === null && proc.signalCode === null) {
      killQuietly(proc.pid, 'SIGKILL');
      await waitForExit(proc, 5_000);
    }
  }
}

async function waitForExit(proc: ChildProcess, timeoutMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  await Promise.race([new Promise<void>((resolve) => proc.once('exit', () => resolve())), sleep(timeoutMs)]);
}
