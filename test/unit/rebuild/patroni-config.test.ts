import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { memberYaml } from './fixtures.js';
import { UsageError } from '../../../src/errors.js';
import { deriveRebuildConfig, parsePatroniConfig } from '../../../src/rebuild/patroni-config.js';

describe('parsePatroniConfig', () => {
  it('reads what a rebuild needs', () => {
    const m = parsePatroniConfig(memberYaml('pg1'), '/etc/patroni/pg1.yml');
    expect(m).toMatchObject({
      path: '/etc/patroni/pg1.yml',
      name: 'pg1',
      scope: 'main',
      namespace: '/service',
      dataDir: '/var/lib/postgresql/15/pg1',
      restApiUrl: 'http://10.0.0.1:8008',
      pgAddress: '10.0.0.1:5432',
      etcdHosts: ['http://10.0.0.11:2379', 'http://10.0.0.12:2379'],
      archives: true,
      hasRestoreCommand: false,
    });
  });

  it('understands a comma-separated hosts string, https and a listen-only REST API', () => {
    const m = parsePatroniConfig(
      memberYaml('pg2', { etcd3: { hosts: 'e1:2379, e2:2379', protocol: 'https' }, restapi: { listen: '0.0.0.0:8009', certfile: '/x.pem' }, namespace: 'svc' }),
      'pg2.yml',
    );
    expect(m.etcdHosts).toEqual(['https://e1:2379', 'https://e2:2379']);
    expect(m.restApiUrl).toBe('https://127.0.0.1:8009');
    expect(m.namespace).toBe('/svc');
  });

  it.each([
    ['not: [valid', /not valid YAML/],
    [stringify({ name: 'x' }), /scope/],
    [memberYaml('pg1', { postgresql: { listen: 'x' } }), /postgresql\.data_dir/],
    [memberYaml('pg1', { postgresql: { data_dir: 'relative/dir' } }), /not absolute/],
    [memberYaml('pg1', { etcd3: undefined }), /no etcd3/],
    [memberYaml('pg1', { etcd3: { hosts: [] } }), /names no hosts/],
    [memberYaml('pg1', { etcd3: { hosts: ['nohostport'] } }), /not host:port/],
    [memberYaml('pg1', { scope: 'bad scope' }), /not a plain name/],
    [memberYaml('pg1', { restapi: {} }), /restapi\.connect_address/],
  ])('refuses a bad config (%#)', (text, message) => {
    expect(() => parsePatroniConfig(text, 'm.yml')).toThrow(UsageError);
    expect(() => parsePatroniConfig(text, 'm.yml')).toThrow(message);
  });
});

describe('deriveRebuildConfig', () => {
  const member = parsePatroniConfig(memberYaml('pg1'), 'pg1.yml');
  const changes = { bootstrapCommand: 'pgdr patroni bootstrap --target latest', replicaCommand: 'pgdr patroni create-replica', restoreCommand: 'pgdr wal fetch %f %p', etcdHosts: null };

  it('adds the custom bootstrap, replicas from the repository and restore_command; keeps the rest', () => {
    const doc = deriveRebuildConfig(member, changes) as Record<string, any>;
    expect(doc.bootstrap.method).toBe('pgdr');
    expect(doc.bootstrap.pgdr).toEqual({ command: changes.bootstrapCommand, keep_existing_recovery_conf: true });
    expect(doc.bootstrap.dcs).toEqual({ ttl: 30, postgresql: { parameters: { archive_command: 'pgdr wal push %p' } } });
    expect(doc.postgresql.create_replica_methods).toEqual(['pgdr', 'basebackup']);
    expect(doc.postgresql.pgdr).toEqual({ command: 'pgdr patroni create-replica', no_leader: true });
    expect(doc.postgresql.recovery_conf).toEqual({ restore_command: 'pgdr wal fetch %f %p' });
    expect(doc.postgresql.authentication.superuser.password).toBe('secret');
    expect(doc.etcd3).toEqual({ hosts: ['10.0.0.11:2379', '10.0.0.12:2379'] });
    // The operator's parsed document is not changed.
    expect((member.raw.bootstrap as Record<string, unknown>).method).toBeUndefined();
  });

  it('keeps an existing restore_command, clones from the leader when asked, and points at new etcd hosts', () => {
    const own = parsePatroniConfig(memberYaml('pg2', { etcd: { host: 'old:2379' }, etcd3: undefined, postgresql: { data_dir: '/d', recovery_conf: { restore_command: 'mine %f %p' } } }), 'pg2.yml');
    const doc = deriveRebuildConfig(own, { ...changes, replicaCommand: null, etcdHosts: ['https://n1:2379', 'https://n2:2379'] }) as Record<string, any>;
    expect(doc.postgresql.recovery_conf).toEqual({ restore_command: 'mine %f %p' });
    expect(doc.postgresql.create_replica_methods).toEqual(['basebackup']);
    expect(doc.postgresql.pgdr).toBeUndefined();
    expect(doc.etcd).toBeUndefined();
    expect(doc.etcd3).toEqual({ hosts: ['n1:2379', 'n2:2379'], protocol: 'https' });
  });
});
