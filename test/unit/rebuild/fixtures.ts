import { stringify } from 'yaml';

/** A member's Patroni YAML like an operator's, with overrides (a key set to undefined is dropped). */
export function memberYaml(name: string, overrides: Record<string, unknown> = {}): string {
  return stringify({
    scope: 'main',
    namespace: '/service/',
    name,
    restapi: { listen: '0.0.0.0:8008', connect_address: `10.0.0.${name.slice(-1)}:8008` },
    etcd3: { hosts: ['10.0.0.11:2379', '10.0.0.12:2379'] },
    bootstrap: { dcs: { ttl: 30, postgresql: { parameters: { archive_command: 'pgdr wal push %p' } } }, initdb: ['data-checksums'] },
    postgresql: {
      listen: '0.0.0.0:5432',
      connect_address: `10.0.0.${name.slice(-1)}:5432`,
      data_dir: `/var/lib/postgresql/15/${name}`,
      authentication: { superuser: { username: 'postgres', password: 'secret' } },
      create_replica_methods: ['basebackup'],
    },
    ...overrides,
  });
}
