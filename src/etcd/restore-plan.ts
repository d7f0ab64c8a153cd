import { isAbsolute, resolve } from 'node:path';
import { UsageError } from '../errors.js';

/**
 * What `pgdr etcd restore` will write, decided from its flags alone (pure, unit-tested). Two shapes:
 *
 *   one member:   --name m1 --data-dir DIR [--initial-advertise-peer-urls URL[,URL]]
 *   all at once:  --members m1=DIR1,m2=DIR2,m3=DIR3
 *
 * both with --initial-cluster m1=URL,m2=URL,m3=URL and --initial-cluster-token TOKEN. A member's peer URLs come
 * from --initial-cluster; --initial-advertise-peer-urls, when given, must say the same (etcd insists on it too,
 * and finding out at start-up, after the restore, is too late).
 */
export interface EtcdRestoreRequest {
  name?: string;
  dataDir?: string;
  initialAdvertisePeerUrls?: string;
  members?: string;
  initialCluster?: string;
  initialClusterToken?: string;
}

export interface EtcdMemberRestore {
  name: string;
  /** Absolute. */
  dataDir: string;
  peerUrls: string[];
}

export interface EtcdRestorePlan {
  /** Normalised, as passed to etcd: name=url,name=url. */
  initialCluster: string;
  initialClusterToken: string;
  members: EtcdMemberRestore[];
  /** Members of --initial-cluster that this run does not restore (restored elsewhere, or forgotten). */
  notRestored: string[];
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Parses etcd's --initial-cluster: name=url pairs; a name may repeat for a member with several peer URLs. */
export function parseInitialCluster(text: string): Map<string, string[]> {
  const members = new Map<string, string[]>();
  const seenUrls = new Set<string>();
  const entries = text.split(',').map((s) => s.trim());
  if (text.trim() === '' || entries.some((e) => e === '')) {
    throw new UsageError(`--initial-cluster ${JSON.stringify(text)} has an empty entry`, 'use name=peerURL pairs: m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380');
  }
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    const name = entry.slice(0, eq);
    if (eq <= 0 || !NAME.test(name)) {
      throw new UsageError(`--initial-cluster entry ${JSON.stringify(entry)} is not name=peerURL`, 'use name=peerURL pairs: m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380');
    }
    const url = normalisePeerUrl(entry.slice(eq + 1), '--initial-cluster');
    if (seenUrls.has(url)) throw new UsageError(`--initial-cluster names peer URL ${url} twice`, 'every member needs its own peer URL');
    seenUrls.add(url);
    members.set(name, [...(members.get(name) ?? []), url]);
  }
  return members;
}

function normalisePeerUrl(text: string, flag: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${flag}: ${JSON.stringify(text)} is not a URL`, 'peer URLs look like http://10.0.0.1:2380');
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.port === '' || url.username !== '' || url.password !== '' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '') {
    throw new UsageError(`${flag}: ${JSON.stringify(text)} is not a peer URL with scheme, host and port`, 'peer URLs look like http://10.0.0.1:2380');
  }
  return `${url.protocol}//${url.host}`;
}

function sameUrls(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');
}

export function planEtcdRestore(request: EtcdRestoreRequest, cwd: string): EtcdRestorePlan {
  if (request.initialCluster === undefined) {
    throw new UsageError('etcd restore needs --initial-cluster', 'list every member of the new cluster: --initial-cluster m1=http://10.0.0.1:2380,m2=...');
  }
  const token = request.initialClusterToken;
  if (token === undefined || !/^[A-Za-z0-9._-]{1,256}$/.test(token)) {
    throw new UsageError(
      token === undefined ? 'etcd restore needs --initial-cluster-token' : `--initial-cluster-token ${JSON.stringify(token)} is not a plain token`,
      'give the new cluster a token of its own (letters, digits, . _ -), e.g. --initial-cluster-token pg-etcd-restored-1',
    );
  }
  const cluster = parseInitialCluster(request.initialCluster);
  const initialCluster = [...cluster.entries()].flatMap(([name, urls]) => urls.map((u) => `${name}=${u}`)).join(',');
  const known = (name: string, flag: string): string[] => {
    const urls = cluster.get(name);
    if (urls === undefined) {
      throw new UsageError(`${flag} names member ${JSON.stringify(name)}, which --initial-cluster does not list`, `--initial-cluster lists ${[...cluster.keys()].join(', ')}`);
    }
    return urls;
  };
  const absolute = (dir: string, flag: string): string => {
    if (dir.trim() === '') throw new UsageError(`${flag} has an empty data directory`, 'give a directory that does not exist yet, or is empty');
    return isAbsolute(dir) ? resolve(dir) : resolve(cwd, dir);
  };

  const single = request.name !== undefined || request.dataDir !== undefined || request.initialAdvertisePeerUrls !== undefined;
  let members: EtcdMemberRestore[];
  if (request.members !== undefined) {
    if (single) {
      throw new UsageError('--members restores every member; it does not go with --name, --data-dir or --initial-advertise-peer-urls', 'use either --members m1=DIR1,m2=DIR2,... or --name NAME --data-dir DIR');
    }
    members = [];
    for (const entry of request.members.split(',').map((s) => s.trim())) {
      const eq = entry.indexOf('=');
      if (eq <= 0 || eq === entry.length - 1) {
        throw new UsageError(`--members entry ${JSON.stringify(entry)} is not name=dataDir`, 'use --members m1=/var/lib/etcd/m1,m2=/var/lib/etcd/m2,...');
      }
      const name = entry.slice(0, eq);
      if (members.some((m) => m.name === name)) throw new UsageError(`--members names ${name} twice`, 'give each member one data directory');
      members.push({ name, dataDir: absolute(entry.slice(eq + 1), '--members'), peerUrls: known(name, '--members') });
    }
  } else if (single) {
    if (request.name === undefined || request.dataDir === undefined) {
      throw new UsageError('restoring one member needs both --name and --data-dir', 'e.g. --name m1 --data-dir /var/lib/etcd/m1 (or --members m1=DIR1,... for all)');
    }
    const peerUrls = known(request.name, '--name');
    if (request.initialAdvertisePeerUrls !== undefined) {
      const given = request.initialAdvertisePeerUrls.split(',').map((u) => normalisePeerUrl(u.trim(), '--initial-advertise-peer-urls'));
      if (!sameUrls(given, peerUrls)) {
        throw new UsageError(
          `--initial-advertise-peer-urls ${given.join(',')} differs from ${request.name}'s peer URLs in --initial-cluster (${peerUrls.join(',')})`,
          'make them agree; etcd refuses a member whose advertised peer URLs are not its --initial-cluster entry',
        );
      }
    }
    members = [{ name: request.name, dataDir: absolute(request.dataDir, '--data-dir'), peerUrls }];
  } else {
    throw new UsageError('etcd restore needs the members to write', 'pass --name NAME --data-dir DIR for one member, or --members m1=DIR1,m2=DIR2,... for all of them');
  }

  const dirs = new Set<string>();
  for (const m of members) {
    if (dirs.has(m.dataDir)) throw new UsageError(`two members would share the data directory ${m.dataDir}`, 'give each member its own data directory');
    dirs.add(m.dataDir);
  }
  for (const a of members) {
    for (const b of members) {
      if (a !== b && b.dataDir.startsWith(`${a.dataDir}/`)) {
        throw new UsageError(`data directory ${b.dataDir} (${b.name}) lies inside ${a.dataDir} (${a.name})`, 'give each member a directory of its own, side by side');
      }
    }
  }
  const restored = new Set(members.map((m) => m.name));
  return { initialCluster, initialClusterToken: token, members, notRestored: [...cluster.keys()].filter((n) => !restored.has(n)) };
}
