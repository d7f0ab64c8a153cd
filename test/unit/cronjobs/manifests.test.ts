import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parsePolicy } from '../../../src/config/policy.js';
import { loadConfigFile } from '../../../src/config/settings.js';
import { cronProblem, nextRuns } from '../../../src/schedule/cron.js';

/**
 * Every manifest in cronjobs/, parsed and checked for the fields that matter: valid schedules, real pgdr commands
 * (as the built `pgdr --help` lists them), Forbid concurrency with history, backoff and deadline limits, no inline
 * credentials, and locked-down non-root, read-only containers.
 */

const root = fileURLToPath(new URL('../../../', import.meta.url));
const cronjobsDir = join(root, 'cronjobs');
const pgdrBin = join(root, 'bin', 'pgdr');

// Parsed YAML is explored freely; the assertions below are the schema.
type Obj = Record<string, any>;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

function parseFile(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const list = Array.isArray(docs) ? docs : [docs];
  for (const doc of list) {
    if (doc.errors.length > 0) throw new Error(`${relative(root, file)}: ${doc.errors[0]?.message}`);
  }
  return list.map((d) => d.toJS() as Obj).filter((d) => d !== null);
}

const files = yamlFiles(cronjobsDir);
const manifests = files.flatMap((file) => parseFile(file).map((doc) => ({ file: relative(cronjobsDir, file), doc })));
const cronJobs = manifests.filter((m) => m.doc.kind === 'CronJob');
const kustomization = manifests.find((m) => m.file === 'kustomization.yaml')!.doc;
/** cronjobs/offsite/: a kustomize Component (a daily full into a second repository), enabled by choice. */
const OFFSITE = 'offsite/';
const offsite = manifests.find((m) => m.file === `${OFFSITE}kustomization.yaml`)!.doc;
const isOffsite = (file: string) => file.startsWith(OFFSITE);

function pgdr(args: string[]): string {
  return execFileSync(process.execPath, [pgdrBin, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' } });
}

/** The subcommand names in a commander help text. */
function helpCommands(help: string): string[] {
  const lines = help.split('\n');
  const start = lines.findIndex((l) => l.trim() === 'Commands:');
  if (start < 0) return [];
  const names: string[] = [];
  for (const line of lines.slice(start + 1)) {
    const m = /^ {2}(\S+)/.exec(line);
    if (m && m[1] !== 'help') names.push(m[1]!.split('|')[0]!);
  }
  return names;
}

let topLevel: string[] = [];
beforeAll(() => {
  if (!existsSync(join(root, 'dist', 'cli', 'entry.js'))) throw new Error('dist/ is missing: run `npm run build` before this test (npm test does)');
  topLevel = helpCommands(pgdr(['--help']));
});

describe('cronjobs/ manifests', () => {
  it('parse, and the kustomization applies every one of them and nothing that holds a secret', () => {
    expect(files.length).toBeGreaterThan(0);
    const resources: string[] = kustomization.resources;
    for (const resource of resources) expect(existsSync(join(cronjobsDir, resource)), resource).toBe(true);
    const applied = new Set(resources);
    for (const { file, doc } of manifests) {
      if (file === 'kustomization.yaml' || file.startsWith('config/')) continue;
      if (isOffsite(file)) {
        if (doc.kind === 'CronJob') expect(offsite.resources, `${file} is not in ${OFFSITE}kustomization.yaml`).toContain(file.slice(OFFSITE.length));
        continue;
      }
      if (doc.kind === 'Secret') {
        expect(applied.has(file), `${file} must not be applied`).toBe(false);
        continue;
      }
      expect(applied.has(file), `${file} is not in kustomization.yaml`).toBe(true);
    }
    for (const generator of kustomization.configMapGenerator) {
      for (const f of generator.files) expect(existsSync(join(cronjobsDir, f)), f).toBe(true);
    }
  });

  it('has one CronJob per job, on the documented schedules', () => {
    const byComponent = new Map(cronJobs.filter((c) => !isOffsite(c.file)).map((c) => [c.doc.metadata.labels['app.kubernetes.io/component'], c.doc]));
    expect([...byComponent.keys()].sort()).toEqual(['backup', 'drill', 'etcd-snapshot', 'expire', 'health', 'verify']);
    const from = new Date('2024-05-03T10:00:00Z');
    const runs = (component: string, n: number) => nextRuns(byComponent.get(component)!.spec.schedule, 'UTC', from, n);
    // Base backup daily at 02:00.
    expect(byComponent.get('backup')!.spec.schedule).toBe('0 2 * * *');
    // Monthly drill on the 1st.
    for (const run of runs('drill', 12)) expect(run.getUTCDate()).toBe(1);
    expect(new Set(runs('drill', 12).map((r) => r.getUTCMonth())).size).toBe(12);
    // Health every 4 hours.
    const health = runs('health', 7);
    for (let i = 1; i < health.length; i++) expect(health[i]!.getTime() - health[i - 1]!.getTime()).toBe(4 * 3_600_000);
    for (const { doc } of cronJobs) expect(doc.spec.timeZone).toBe('Etc/UTC');
  });

  it.each(cronJobs.map((c) => [c.file, c.doc] as const))('%s: valid cron, Forbid, history, backoff and deadlines', (_file, cj) => {
    expect(cronProblem(cj.spec.schedule, { allowSeconds: false })).toBeNull();
    expect(cj.spec.concurrencyPolicy).toBe('Forbid');
    for (const limit of [cj.spec.successfulJobsHistoryLimit, cj.spec.failedJobsHistoryLimit]) {
      expect(Number.isInteger(limit) && limit >= 1 && limit <= 10).toBe(true);
    }
    expect(cj.spec.startingDeadlineSeconds).toBeGreaterThan(0);
    const job = cj.spec.jobTemplate.spec;
    expect(Number.isInteger(job.backoffLimit) && job.backoffLimit >= 0 && job.backoffLimit <= 3).toBe(true);
    expect(job.activeDeadlineSeconds).toBeGreaterThan(0);
    expect(['Never', 'OnFailure']).toContain(job.template.spec.restartPolicy);
  });

  it.each(cronJobs.map((c) => [c.file, c.doc] as const))('%s: non-root, read-only, no capabilities, RuntimeDefault seccomp, no API token', (_file, cj) => {
    const pod = cj.spec.jobTemplate.spec.template.spec;
    expect(pod.serviceAccountName).toBe('pgdr');
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.hostNetwork ?? false).toBe(false);
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.securityContext.seccompProfile.type).toBe('RuntimeDefault');
    expect(pod.containers).toHaveLength(1);
    for (const container of pod.containers) {
      const sc = container.securityContext;
      expect(sc.runAsNonRoot).toBe(true);
      expect(sc.allowPrivilegeEscalation).toBe(false);
      expect(sc.readOnlyRootFilesystem).toBe(true);
      expect(sc.privileged ?? false).toBe(false);
      expect(sc.capabilities.drop).toContain('ALL');
      expect(sc.capabilities.add ?? []).toEqual([]);
      expect(container.resources.limits.memory).toBeTruthy();
      // Writes go to emptyDir volumes only; config comes read-only from the ConfigMap.
      const volumes = new Map<string, Obj>(pod.volumes.map((v: Obj) => [v.name, v]));
      const mounts: Obj[] = container.volumeMounts;
      const configMount = mounts.find((m) => volumes.get(m.name)?.configMap);
      expect(configMount?.readOnly).toBe(true);
      expect(volumes.get(configMount!.name)!.configMap.name).toBe(isOffsite(_file) ? 'pgdr-offsite-config' : 'pgdr-config');
      const writable = mounts.filter((m) => !m.readOnly).map((m) => m.mountPath);
      for (const m of mounts.filter((m) => !m.readOnly)) expect(volumes.get(m.name)?.emptyDir, m.mountPath).toBeDefined();
      const env = new Map<string, Obj>(container.env.map((e: Obj) => [e.name, e]));
      expect(writable).toContain(env.get('HOME')!.value);
      expect(writable).toContain(env.get('TMPDIR')!.value);
      expect(env.get('PGDR_CONFIG')!.value).toBe(`${configMount!.mountPath}/pgdr.yaml`);
    }
  });

  it.each(cronJobs.map((c) => [c.file, c.doc] as const))('%s: credentials come from a Secret, never inline', (_file, cj) => {
    for (const container of cj.spec.jobTemplate.spec.template.spec.containers) {
      const env: Obj[] = container.env;
      // The off-site job signs with a credentials file per repository, mounted read-only from a Secret.
      const fromEnv = isOffsite(_file) ? ['PGPASSWORD'] : ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'PGPASSWORD'];
      if (isOffsite(_file)) {
        const pod = cj.spec.jobTemplate.spec.template.spec;
        const secretVolume = pod.volumes.find((v: Obj) => v.secret);
        expect(secretVolume.secret.secretName).toBe('pgdr-repository-credentials');
        expect(container.volumeMounts.find((m: Obj) => m.name === secretVolume.name).readOnly).toBe(true);
        expect(env.map((e) => e.name)).not.toContain('AWS_ACCESS_KEY_ID');
      }
      for (const name of fromEnv) {
        const entry = env.find((e) => e.name === name);
        expect(entry?.value, name).toBeUndefined();
        expect(entry?.valueFrom?.secretKeyRef?.name, name).toBe('pgdr-credentials');
        expect(entry?.valueFrom?.secretKeyRef?.key, name).toBe(name);
      }
      for (const e of env) {
        if (/SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL/i.test(e.name)) expect(e.value, e.name).toBeUndefined();
      }
      expect(container.envFrom ?? []).toEqual([]);
      // No credentials in arguments either.
      expect(container.args.join(' ')).not.toMatch(/password|secret|AKIA/i);
    }
  });

  it('hold no literal AWS keys or passwords anywhere, and the example Secret holds only placeholders', () => {
    for (const file of yamlFiles(cronjobsDir)) {
      const text = readFileSync(file, 'utf8');
      expect(text, relative(root, file)).not.toMatch(/\b(AKIA|ASIA)[0-9A-Z]{16}\b/);
      expect(text, relative(root, file)).not.toMatch(/\b[A-Za-z0-9/+]{40}\b/);
    }
    for (const { doc } of manifests.filter((m) => m.doc.kind === 'Secret')) {
      for (const value of Object.values(doc.stringData ?? {})) expect(value).toBe('REPLACE_ME');
      expect(doc.data).toBeUndefined();
    }
  });

  it('grant no Kubernetes API access (pgdr talks to Patroni, etcd and storage over the network only)', () => {
    const account = manifests.find((m) => m.doc.kind === 'ServiceAccount')!.doc;
    expect(account.metadata.name).toBe('pgdr');
    expect(account.automountServiceAccountToken).toBe(false);
    for (const { doc } of manifests) {
      if (doc.kind === 'Role' || doc.kind === 'ClusterRole') {
        for (const rule of doc.rules ?? []) for (const verb of rule.verbs) expect(['get', 'list', 'watch']).toContain(verb);
      }
      expect(doc.kind).not.toBe('ClusterRoleBinding');
    }
  });

  it('the off-site component backs up into the second repository of a config pgdr accepts, by name', () => {
    expect(offsite.kind).toBe('Component');
    const settings = loadConfigFile(join(cronjobsDir, 'offsite', 'pgdr.yaml'));
    expect(settings.repositories?.map((r) => [r.name, r.receives])).toEqual([['r2', ['wal', 'backups', 'etcd']], ['b2', ['backups']]]);
    for (const r of settings.repositories ?? []) expect(r.credentials?.file).toBe('/etc/pgdr-credentials/credentials');
    const job = cronJobs.find((c) => isOffsite(c.file))!.doc;
    expect(job.spec.jobTemplate.spec.template.spec.containers[0].args.slice(0, 4)).toEqual(['backup', 'now', '--repo', 'b2']);
  });

  it('use a ConfigMap that pgdr accepts as its config file and policy', () => {
    const settings = loadConfigFile(join(cronjobsDir, 'config', 'pgdr.yaml'));
    expect(settings.repo).toMatch(/^s3:\/\//);
    expect(settings.policy).toBe('/etc/pgdr/policy.yaml');
    expect(JSON.stringify(settings)).not.toMatch(/password|secret/i);
    const policy = parsePolicy(readFileSync(join(cronjobsDir, 'config', 'policy.yaml'), 'utf8'), 'cronjobs/config/policy.yaml');
    expect(policy.health.backupAge).toEqual({ warning: 26 * 3_600_000, critical: 48 * 3_600_000 });
  });

  it.each(cronJobs.map((c) => [c.file, c.doc] as const))('%s: runs a real pgdr command with flags it has', (_file, cj) => {
    const container = cj.spec.jobTemplate.spec.template.spec.containers[0];
    // The image's entrypoint is pgdr (checked below); the manifest gives only its arguments.
    expect(container.command).toBeUndefined();
    const args: string[] = container.args;
    const firstFlag = args.findIndex((a) => a.startsWith('-'));
    const words = firstFlag < 0 ? args : args.slice(0, firstFlag);
    expect(topLevel).toContain(words[0]);
    let help = pgdr([words[0]!, '--help']);
    if (words.length > 1) {
      expect(helpCommands(help)).toContain(words[1]);
      help = pgdr([words[0]!, words[1]!, '--help']);
    }
    for (const flag of args.filter((a) => a.startsWith('--'))) expect(help, `${words.join(' ')} ${flag}`).toContain(flag.split('=')[0]);
  });

  it('build an image from node:20 slim with the PostgreSQL 15 client, zstd, a non-root user and pgdr as entrypoint', () => {
    const dockerfile = readFileSync(join(cronjobsDir, 'Dockerfile'), 'utf8');
    const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    expect(froms.at(-1)).toMatch(/^node:20-[a-z]+-slim$/);
    expect(dockerfile).toMatch(/apt-get install[^\n]*postgresql-client-15/);
    expect(dockerfile).toMatch(/apt-get install[^\n]*\bzstd\b/);
    const user = [...dockerfile.matchAll(/^USER (\d+)(?::(\d+))?/gm)].at(-1);
    expect(Number(user?.[1])).toBeGreaterThan(0);
    const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
    expect(entrypoint.at(-1)).toBe('pgdr');
    for (const { doc } of cronJobs) {
      expect(doc.spec.jobTemplate.spec.template.spec.securityContext.runAsUser).toBe(Number(user?.[1]));
    }
  });
});
