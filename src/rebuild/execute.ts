import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify as toYaml } from 'yaml';
import { z } from 'zod';
import { ServiceError, UsageError, errorMessage } from '../errors.js';
import { readPatroniCluster } from '../cluster/patroni-api.js';
import type { ClusterView } from '../cluster/members.js';
import { openEtcdClient, resolveEtcdConnection } from '../etcd/connection.js';
import { restoreEtcdSnapshot } from '../etcd/restore.js';
import type { EtcdRestorePlan } from '../etcd/restore-plan.js';
import { isServerRunning } from '../postgres/local-server.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import { isAlive, readPidFile, runStartCommand, serviceEnvironment, startDetached, type DetachedService } from './daemon.js';
import type { PlannedEtcdMember, PlannedMember, RebuildPlan, RebuildStep } from './plan.js';

/**
 * Carries out a rebuild plan step by step, with a progress line per step. Everything that can be checked before
 * the first write is checked first (data directories, leftover services); a failure later leaves what was started
 * running, with its pid files named, so the operator can look at it and stop it.
 */
export interface RebuildOptions {
  plan: RebuildPlan;
  configs: Record<string, Record<string, unknown>>;
  /** For step restore-etcd. */
  etcdRestore: EtcdRestorePlan | null;
  store: ObjectStore;
  layout: RepositoryLayout;
  force: boolean;
  /** Per waiting step (etcd quorum, leader, replicas). */
  waitTimeoutMs: number;
  workDir: string;
  /** age identity file for an encrypted etcd snapshot (PostgreSQL's restore gets it through `env`, PGDR_IDENTITY_FILE). */
  identityFile?: string;
  env: NodeJS.ProcessEnv;
  log: (message: string) => void;
}

export interface StartedService {
  kind: 'etcd' | 'patroni';
  name: string;
  pid: number | null;
  pidFile: string | null;
  logFile: string | null;
}

export interface RebuildResult {
  started: StartedService[];
  leader: { name: string; timeline: number | null } | null;
  view: ClusterView | null;
  /** Steps left to the operator (--no-start). */
  manualSteps: RebuildStep[];
}

const REQUEST_TIMEOUT_MS = 3_000;
const POLL_MS = 500;

export async function executeRebuild(options: RebuildOptions): Promise<RebuildResult> {
  const { plan, log } = options;
  await preflight(options);
  const result: RebuildResult = { started: [], leader: null, view: null, manualSteps: plan.steps.filter((s) => s.manual) };
  const services = new Map<string, DetachedService>();
  const total = plan.steps.length;
  try {
    for (const step of plan.steps) {
      if (step.manual) continue;
      const began = Date.now();
      log(`step ${step.number}/${total}: ${step.title}`);
      switch (step.action) {
        case 'restore-etcd':
          if (options.etcdRestore === null || plan.etcd.snapshotId === null) throw new Error('restore-etcd step without an etcd restore plan');
          await restoreEtcdSnapshot({ store: options.store, layout: options.layout, snapshotId: plan.etcd.snapshotId, plan: options.etcdRestore, workDir: options.workDir, dryRun: false, log, ...(options.identityFile === undefined ? {} : { identityFile: options.identityFile }) });
          break;
        case 'start-etcd':
          for (const member of plan.etcd.members) await startEtcd(member, options, result, services);
          await waitForEtcd(plan.etcd.endpoints, options);
          break;
        case 'clear-scope':
          await clearScope(plan, options);
          break;
        case 'write-configs':
          for (const member of plan.members) {
            await mkdir(dirname(member.configFile), { recursive: true });
            // 0600: the operator's config may carry PostgreSQL passwords.
            await writeFile(member.configFile, toYaml(options.configs[member.name]), { mode: 0o600 });
          }
          break;
        case 'start-leader': {
          const leader = plan.members[0] as PlannedMember;
          await startPatroni(leader, options, result, services);
          const timeline = await waitForLeader(leader, options, services);
          result.leader = { name: leader.name, timeline };
          if (timeline !== null && timeline > 1) await waitForHistoryFile(timeline, options);
          break;
        }
        case 'start-replicas': {
          const replicas = plan.members.slice(1);
          for (const replica of replicas) await startPatroni(replica, options, result, services);
          await waitForReplicas(plan.members[0] as PlannedMember, replicas, result.leader?.timeline ?? null, options, services);
          break;
        }
        case 'report-status':
          result.view = await readAnyMember(plan.members);
          break;
      }
      log(`step ${step.number}/${total} done (${((Date.now() - began) / 1000).toFixed(1)} s)`);
    }
  } catch (err) {
    if (result.started.length > 0) {
      log(`the rebuild stopped; pgdr left these running for inspection: ${result.started.map(describeStarted).join('; ')}`);
    }
    throw err;
  }
  return result;
}

function describeStarted(s: StartedService): string {
  return `${s.kind} ${s.name}${s.pid !== null ? ` (pid ${s.pid}, stop: kill $(cat ${s.pidFile}); log ${s.logFile})` : ' (started by your start command)'}`;
}

/**
 * What the rebuild refuses for, found without changing anything: non-empty data directories (unless --force),
 * PostgreSQL still running in one, a Patroni or etcd of the old cluster still answering. `restore cluster --dry-run`
 * reports the same list, so a dry run that passes means the real run gets past its checks.
 */
export async function findRebuildObstacles(plan: RebuildPlan, force: boolean): Promise<UsageError[]> {
  const obstacles: UsageError[] = [];
  for (const member of plan.members) {
    const state = await inspectDataDirectory(member.dataDir);
    if (state instanceof UsageError) obstacles.push(state);
    else if (state === 'occupied' && !force) obstacles.push(notEmpty(member.dataDir));
    else if (state === 'occupied' && isServerRunning(member.dataDir)) {
      obstacles.push(new UsageError(`PostgreSQL still runs in ${member.dataDir} (${member.name})`, 'stop Patroni and PostgreSQL on every member before a rebuild'));
    }
  }
  for (const member of plan.etcd.members) {
    const state = await inspectDataDirectory(member.dataDir);
    if (state instanceof UsageError) obstacles.push(state);
    else if (state === 'occupied' && !force) obstacles.push(notEmpty(member.dataDir));
  }
  if (plan.manual) return obstacles;
  for (const member of plan.members) {
    const pid = readPidFile(member.pidFile);
    if (pid !== undefined && isAlive(pid)) obstacles.push(new UsageError(`Patroni ${member.name} from an earlier rebuild still runs (pid ${pid}, ${member.pidFile})`, `stop it first: kill ${pid}`));
    if (await answers(`${member.restApiUrl}/patroni`)) {
      obstacles.push(
        new UsageError(`a Patroni still answers at ${member.restApiUrl} (${member.name})`, 'stop Patroni on every member before a rebuild: a running member would join the rebuilt cluster with its old data'),
      );
    }
  }
  for (const member of plan.etcd.members) {
    if (await answers(`${member.clientUrl}/health`)) {
      obstacles.push(new UsageError(`an etcd still answers at ${member.clientUrl} (${member.name})`, 'stop every member of the old etcd cluster first; a restored member must never meet an old one'));
    }
  }
  return obstacles;
}

/** Refuses before anything is written (the first obstacle), then, with --force, empties the data directories. */
async function preflight(options: RebuildOptions): Promise<void> {
  const { plan } = options;
  const obstacles = await findRebuildObstacles(plan, options.force);
  if (obstacles.length > 0) throw obstacles[0];
  for (const dir of [...plan.members.map((m) => m.dataDir), ...plan.etcd.members.map((m) => m.dataDir)]) {
    if ((await inspectDataDirectory(dir)) !== 'occupied') continue;
    options.log(`--force: removing the contents of ${dir}`);
    for (const entry of await readdir(dir)) await rm(`${dir}/${entry}`, { recursive: true, force: true });
  }
}

function notEmpty(dir: string): UsageError {
  return new UsageError(`data directory ${dir} is not empty`, 'a rebuild writes only into empty data directories: move the old one aside, or pass --force to delete what it holds');
}

async function inspectDataDirectory(dir: string): Promise<'absent' | 'empty' | 'occupied' | UsageError> {
  try {
    const info = await stat(dir);
    if (!info.isDirectory()) return new UsageError(`${dir} exists and is not a directory`, 'give data directories that are absent or empty');
    return (await readdir(dir)).length === 0 ? 'empty' : 'occupied';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    return new UsageError(`cannot inspect ${dir}: ${errorMessage(err)}`, 'check the path and its permissions');
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    return true;
  } catch {
    return false;
  }
}

async function startEtcd(member: PlannedEtcdMember, options: RebuildOptions, result: RebuildResult, services: Map<string, DetachedService>): Promise<void> {
  const env = serviceEnvironment(options.env, 'ETCD_');
  if (member.detached) {
    const service = await startDetached(member.startCommand, { logFile: member.logFile, pidFile: member.pidFile, env, cwd: dirname(member.dataDir) });
    services.set(`etcd/${member.name}`, service);
    result.started.push({ kind: 'etcd', name: member.name, pid: service.pid, pidFile: member.pidFile, logFile: member.logFile });
    options.log(`etcd ${member.name} started (pid ${service.pid}, log ${member.logFile})`);
  } else {
    await runStartCommand(member.startCommand, `etcd ${member.name}`, env);
    result.started.push({ kind: 'etcd', name: member.name, pid: null, pidFile: null, logFile: null });
  }
}

async function startPatroni(member: PlannedMember, options: RebuildOptions, result: RebuildResult, services: Map<string, DetachedService>): Promise<void> {
  // Patroni drops only its own PATRONI_* variables before it runs PostgreSQL; credentials for the repository reach
  // archive_command and the pgdr adapters through this environment, never through a command line.
  const env = serviceEnvironment(options.env, 'PATRONI_');
  if (member.detached) {
    const service = await startDetached(member.startCommand, { logFile: member.logFile, pidFile: member.pidFile, env, cwd: dirname(member.dataDir) });
    services.set(`patroni/${member.name}`, service);
    result.started.push({ kind: 'patroni', name: member.name, pid: service.pid, pidFile: member.pidFile, logFile: member.logFile });
    options.log(`Patroni ${member.name} started (pid ${service.pid}, log ${member.logFile})`);
  } else {
    await runStartCommand(member.startCommand, `Patroni ${member.name}`, env);
    result.started.push({ kind: 'patroni', name: member.name, pid: null, pidFile: null, logFile: null });
  }
}

/** Throws with the log's end when a service pgdr started died on its own, instead of letting a wait time out. */
function checkServices(services: Map<string, DetachedService>): void {
  for (const [name, service] of services) {
    const why = service.exited();
    if (why !== undefined) {
      throw new ServiceError(`${name.replace('/', ' ')} ${why}; its log ${service.logFile} ends with: ${lastLine(service.logTail(5))}`, `read ${service.logFile}`);
    }
  }
}

function lastLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '').pop() ?? '(empty)';
}

async function poll<T>(what: string, options: RebuildOptions, services: Map<string, DetachedService>, attempt: () => Promise<T | string>, hint: string): Promise<T> {
  const deadline = Date.now() + options.waitTimeoutMs;
  let last = 'no answer yet';
  let reported = Date.now();
  for (;;) {
    checkServices(services);
    try {
      const outcome = await attempt();
      if (typeof outcome !== 'string') return outcome;
      last = outcome;
    } catch (err) {
      last = errorMessage(err);
    }
    if (Date.now() > deadline) throw new ServiceError(`${what} within ${options.waitTimeoutMs / 1000} s (last: ${last})`, hint);
    if (Date.now() - reported >= 15_000) {
      options.log(`still waiting: ${last}`);
      reported = Date.now();
    }
    await sleep(POLL_MS);
  }
}

async function waitForEtcd(endpoints: readonly string[], options: RebuildOptions): Promise<void> {
  const connection = resolveEtcdConnection(endpoints, options.env);
  for (const endpoint of connection.endpoints) {
    await poll(`etcd at ${endpoint} did not answer`, options, new Map(), async () => {
      const client = await openEtcdClient(connection, endpoint, REQUEST_TIMEOUT_MS);
      try {
        // A linearizable read succeeds only once the cluster has a leader: a quorum is up.
        await client.get('pgdr-rebuild-probe').string();
        return true;
      } finally {
        client.close();
      }
    }, 'read the etcd members\' logs; every member must be started with the names and peer URLs of the restore');
  }
}

async function clearScope(plan: RebuildPlan, options: RebuildOptions): Promise<void> {
  const connection = resolveEtcdConnection(plan.etcd.endpoints, options.env);
  const prefix = `${plan.namespace}/${plan.scope}/`;
  let lastError: unknown;
  for (const endpoint of connection.endpoints) {
    const client = await openEtcdClient(connection, endpoint, 10_000);
    try {
      const deleted = await client.delete().prefix(prefix);
      options.log(`removed ${deleted.deleted} key(s) under ${prefix}`);
      return;
    } catch (err) {
      lastError = err;
    } finally {
      client.close();
    }
  }
  throw new ServiceError(`could not remove the keys under ${prefix} from etcd: ${errorMessage(lastError)}`, 'check --etcd (or the restored etcd members\' logs) and etcd credentials (PGDR_ETCD_USER/PGDR_ETCD_PASSWORD)');
}

async function waitForLeader(leader: PlannedMember, options: RebuildOptions, services: Map<string, DetachedService>): Promise<number | null> {
  return poll(
    `${leader.name} did not become the leader`,
    options,
    services,
    async () => {
      const view = await readPatroniCluster(leader.restApiUrl, { timeoutMs: REQUEST_TIMEOUT_MS });
      const me = view.members.find((m) => m.name === leader.name);
      if (view.leader !== leader.name || me === undefined) return `${leader.name} is not the leader yet (leader: ${view.leader ?? 'none'})`;
      if (me.state !== 'running') return `${leader.name} is ${me.state}`;
      return { timeline: me.timeline };
    },
    `read ${leader.logFile} and PostgreSQL's log in ${leader.dataDir}; the custom bootstrap runs \`pgdr patroni bootstrap\`, whose output is in Patroni's log`,
  ).then((r) => r.timeline);
}

/** Replicas built from the repository replay its archive: they must see the new timeline's history file there. */
async function waitForHistoryFile(timeline: number, options: RebuildOptions): Promise<void> {
  const name = `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
  const key = options.layout.walObject(name);
  await poll(`the leader did not archive ${name}`, options, new Map(), async () => ((await options.store.head(key)) !== null ? true : `${name} not in the repository yet`), 'check archive_command in the members\' configs and pg_stat_archiver on the leader');
  options.log(`${name} is in the repository`);
}

const PatroniStatusSchema = z.looseObject({
  replication: z.array(z.looseObject({ application_name: z.string().optional(), state: z.string().optional() })).optional(),
});

async function waitForReplicas(leader: PlannedMember, replicas: PlannedMember[], timeline: number | null, options: RebuildOptions, services: Map<string, DetachedService>): Promise<void> {
  await poll(
    `the replicas did not stream from ${leader.name}`,
    options,
    services,
    async () => {
      const response = await fetch(`${leader.restApiUrl}/patroni`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const parsed = PatroniStatusSchema.safeParse(await response.json());
      if (!parsed.success) return `${leader.restApiUrl}/patroni answered unexpectedly`;
      const streaming = new Set((parsed.data.replication ?? []).filter((r) => r.state === 'streaming').map((r) => r.application_name));
      const missing = replicas.filter((r) => !streaming.has(r.name)).map((r) => r.name);
      if (missing.length > 0) return `not streaming yet: ${missing.join(', ')}`;
      const view = await readPatroniCluster(leader.restApiUrl, { timeoutMs: REQUEST_TIMEOUT_MS });
      const behind = replicas.filter((r) => {
        const m = view.members.find((x) => x.name === r.name);
        return m === undefined || m.state !== 'running' || (timeline !== null && m.timeline !== null && m.timeline !== timeline);
      });
      if (behind.length > 0) return `not running on timeline ${timeline ?? '?'} yet: ${behind.map((r) => r.name).join(', ')}`;
      return true;
    },
    'read the replicas\' Patroni logs; create_replica_methods runs `pgdr patroni create-replica`, then basebackup',
  );
}

async function readAnyMember(members: readonly PlannedMember[]): Promise<ClusterView | null> {
  for (const m of members) {
    try {
      return await readPatroniCluster(m.restApiUrl, { timeoutMs: REQUEST_TIMEOUT_MS });
    } catch {
      // the next member may answer
    }
  }
  return null;
}
