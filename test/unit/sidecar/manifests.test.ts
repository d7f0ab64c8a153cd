import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parsePolicy } from '../../../src/config/policy.js';
import { loadConfigFile } from '../../../src/config/settings.js';
import { supersedingBackupJob } from '../../../src/schedule/backup-jobs.js';
import { parseScheduleSection } from '../../../src/schedule/config.js';
import { cronFiresAt, nextRuns } from '../../../src/schedule/cron.js';

/**
 * The sidecar example in sidecar/: a kustomize Component that patches the Patroni StatefulSet with one pgdr
 * container. Checked here: it is a patch of exactly that container and its own volumes, runs a real `pgdr schedule`,
 * mounts the data volume read-only where its config says the data directory is, runs non-root with nothing it does
 * not need, takes credentials only from the Secret, and its policy takes one full and six incrs a week on the leader.
 */

const root = fileURLToPath(new URL('../../../', import.meta.url));
const dir = join(root, 'sidecar');
// Parsed YAML is explored freely; the assertions below are the schema.
type Obj = Record<string, any>;

const kustomization = parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
const patchDocs = parseAllDocuments(readFileSync(join(dir, 'statefulset-pgdr-sidecar.yaml'), 'utf8'));
const patch = (Array.isArray(patchDocs) ? patchDocs : [patchDocs]).map((d) => d.toJS() as Obj);
const pod = patch[0]!.spec.template.spec;
const container: Obj = pod.containers[0];

function pgdrHelp(args: string[]): string {
  return execFileSync(process.execPath, [join(root, 'bin', 'pgdr'), ...args, '--help'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' } });
}

beforeAll(() => {
  if (!existsSync(join(root, 'dist', 'cli', 'entry.js'))) throw new Error('dist/ is missing: run `npm run build` before this test (npm test does)');
});

describe('sidecar/ (pgdr beside PostgreSQL in the Patroni pods)', () => {
  it('is a Component that patches one StatefulSet and generates its own ConfigMap from files that exist', () => {
    expect(kustomization.kind).toBe('Component');
    expect(kustomization.resources ?? []).toEqual([]);
    expect(kustomization.patches).toEqual([{ path: 'statefulset-pgdr-sidecar.yaml', target: { kind: 'StatefulSet', name: patch[0]!.metadata.name } }]);
    const generator = kustomization.configMapGenerator[0];
    expect(generator.name).toBe('pgdr-sidecar-config');
    for (const file of generator.files) expect(existsSync(join(dir, file)), file).toBe(true);
    expect(patch).toHaveLength(1);
    expect(patch[0]).toMatchObject({ apiVersion: 'apps/v1', kind: 'StatefulSet' });
  });

  it("adds only the pgdr container and its own volumes, leaving the pod's settings to the database", () => {
    expect(pod.containers.map((c: Obj) => c.name)).toEqual(['pgdr']);
    for (const key of ['securityContext', 'serviceAccountName', 'hostNetwork', 'shareProcessNamespace', 'volumeClaimTemplates']) expect(pod[key], key).toBeUndefined();
    // Its volumes are its own (prefixed); the data volume is the database's, referenced, not defined.
    for (const volume of pod.volumes) expect(volume.name).toMatch(/^pgdr-/);
    const mounts: Obj[] = container.volumeMounts;
    const data = mounts.find((m) => m.name === 'pgdata')!;
    expect(pod.volumes.some((v: Obj) => v.name === 'pgdata')).toBe(false);
    expect(data.readOnly).toBe(true);
  });

  it('runs `pgdr schedule` with flags it has, its settings and policy from the ConfigMap', () => {
    expect(container.command).toBeUndefined();
    expect(container.args[0]).toBe('schedule');
    const help = pgdrHelp(['schedule']);
    for (const flag of container.args.filter((a: string) => a.startsWith('--'))) expect(help).toContain(flag.split('=')[0]);
    const env = new Map<string, Obj>(container.env.map((e: Obj) => [e.name, e]));
    const configMount = container.volumeMounts.find((m: Obj) => m.name === 'pgdr-config');
    expect(configMount.readOnly).toBe(true);
    expect(pod.volumes.find((v: Obj) => v.name === 'pgdr-config').configMap.name).toBe(kustomization.configMapGenerator[0].name);
    expect(env.get('PGDR_CONFIG')!.value).toBe(`${configMount.mountPath}/pgdr.yaml`);
  });

  it('reads the data directory under its read-only mount with the files engine, and reaches the server over the pod loopback', () => {
    const settings = loadConfigFile(join(dir, 'config', 'pgdr.yaml'));
    const data = container.volumeMounts.find((m: Obj) => m.name === 'pgdata');
    expect(settings.pgdata!.startsWith(`${data.mountPath}/`)).toBe(true);
    expect(settings.engine).toBe('files');
    expect(settings.pgHost).toBe('127.0.0.1');
    expect(settings.policy).toBe(`${container.volumeMounts.find((m: Obj) => m.name === 'pgdr-config').mountPath}/policy.yaml`);
    expect(JSON.stringify(settings)).not.toMatch(/password|secret/i);
    // The same repository namespace as the CronJobs, so both see the same backups.
    expect(settings.repo).toBe(loadConfigFile(join(root, 'cronjobs', 'config', 'pgdr.yaml')).repo);
    expect(settings.cluster).toBe(loadConfigFile(join(root, 'cronjobs', 'config', 'pgdr.yaml')).cluster);
  });

  it('runs as a non-root uid with a read-only root file system, no capabilities, no escalation and no API token', () => {
    const sc = container.securityContext;
    expect(sc.runAsNonRoot).toBe(true);
    expect(sc.runAsUser).toBeGreaterThan(0);
    expect(sc.runAsGroup).toBeGreaterThan(0);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.privileged).toBe(false);
    expect(sc.capabilities).toEqual({ drop: ['ALL'] });
    expect(sc.seccompProfile.type).toBe('RuntimeDefault');
    expect(container.resources.limits.memory).toBeTruthy();
    const volumes = new Map<string, Obj>(pod.volumes.map((v: Obj) => [v.name, v]));
    const writable = container.volumeMounts.filter((m: Obj) => !m.readOnly);
    for (const m of writable) expect(volumes.get(m.name)?.emptyDir, m.mountPath).toBeDefined();
    const env = new Map<string, Obj>(container.env.map((e: Obj) => [e.name, e]));
    expect(writable.map((m: Obj) => m.mountPath)).toEqual(expect.arrayContaining([env.get('HOME')!.value, env.get('TMPDIR')!.value]));
    const token = container.volumeMounts.find((m: Obj) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount');
    expect(volumes.get(token.name)?.emptyDir).toBeDefined();
  });

  it('takes credentials from the Secret, never inline or on the command line', () => {
    const env: Obj[] = container.env;
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'PGPASSWORD']) {
      const entry = env.find((e) => e.name === name);
      expect(entry?.value, name).toBeUndefined();
      expect(entry?.valueFrom?.secretKeyRef, name).toEqual({ name: 'pgdr-credentials', key: name });
    }
    for (const e of env) if (/SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL/i.test(e.name)) expect(e.value, e.name).toBeUndefined();
    expect(container.envFrom ?? []).toEqual([]);
    expect(container.args.join(' ')).not.toMatch(/password|secret|AKIA/i);
    for (const file of ['kustomization.yaml', 'statefulset-pgdr-sidecar.yaml', 'config/pgdr.yaml', 'config/policy.yaml']) {
      const text = readFileSync(join(dir, file), 'utf8');
      expect(text, file).not.toMatch(/\b(AKIA|ASIA)[0-9A-Z]{16}\b/);
      expect(text, file).not.toMatch(/\b[A-Za-z0-9/+]{40}\b/);
    }
  });

  it("backs up only on the leader's pod: a full on Sundays and an incr on the six other days, nothing else", () => {
    const text = readFileSync(join(dir, 'config', 'policy.yaml'), 'utf8');
    parsePolicy(text, 'sidecar/config/policy.yaml');
    const schedule = parseScheduleSection((parseYaml(text) as Obj).schedule, 'sidecar/config/policy.yaml', { etcdConfigured: false });
    expect(schedule.leaderGate).toBe('patroni');
    expect(schedule.localPatroni).toBe('http://127.0.0.1:8008');
    const enabled = schedule.jobs.filter((j) => j.enabled);
    expect(enabled.map((j) => [j.name, j.backupType, j.command.join(' ')])).toEqual([
      ['backup', 'full', 'backup now --type full --engine files'],
      ['backup-incr', 'incr', 'backup now --type incr --engine files'],
    ]);
    // Two weeks from a Wednesday: which job actually runs at each moment a backup job fires.
    const moments = enabled
      .flatMap((j) => nextRuns(j.cron, schedule.timeZone, new Date('2024-05-01T12:00:00Z'), 14))
      .filter((at) => at < new Date('2024-05-15T12:00:00Z'))
      .map((at) => at.getTime());
    const taken = [...new Set(moments)].sort().map((ms) => {
      const at = new Date(ms);
      const runs = enabled.filter((j) => cronFiresAt(j.cron, schedule.timeZone, at) && supersedingBackupJob(j, at, enabled, (job, when) => cronFiresAt(job.cron, schedule.timeZone, when)) === undefined);
      expect(runs, at.toISOString()).toHaveLength(1);
      return `${at.getUTCDay()} ${runs[0]!.backupType}`;
    });
    expect(taken).toHaveLength(14);
    expect(taken.filter((t) => t === '0 full')).toHaveLength(2);
    expect(taken.filter((t) => t.endsWith(' incr'))).toHaveLength(12);
    // Stopping inside Kubernetes' default grace of 30 s.
    expect(schedule.gracePeriodMs).toBeLessThan(30_000);
  });
});
