import { UsageError } from '../../errors.js';
import { withConnection, type PgEndpoint } from '../../postgres/connection.js';
import type { BackupEngine } from '../engine.js';
import { baseBackupEngine } from './basebackup.js';
import { filesEngine } from './files/engine.js';
import { localDataDirectoryProblem, readLocalServerFacts } from './files/local-server.js';

export interface EngineChoice {
  engine: BackupEngine;
  /** The data directory the files engine reads, when it is not the server's data_directory. */
  pgdata?: string;
  /** Why this engine, for the log. */
  reason: string;
}

/**
 * `auto` takes the files engine when pgdr runs where it can read the server's data directory (the server's host as
 * its OS user, or a sidecar sharing the data volume: `--pgdata` names the mount), and the basebackup engine
 * otherwise (a CronJob elsewhere in the cluster). `files` and `basebackup` are taken as asked; `files` fails at once
 * with the reason when the data directory is not here.
 */
export async function chooseEngine(requested: 'auto' | 'files' | 'basebackup', endpoint: PgEndpoint, pgdataHint: string | undefined): Promise<EngineChoice> {
  if (requested === 'basebackup') return { engine: baseBackupEngine, reason: '--engine basebackup' };
  let problem: string;
  try {
    const facts = await withConnection(endpoint, readLocalServerFacts);
    const candidates = [facts.dataDirectory, ...(pgdataHint !== undefined && pgdataHint !== facts.dataDirectory ? [pgdataHint] : [])];
    const problems: string[] = [];
    for (const candidate of candidates) {
      const why = localDataDirectoryProblem(candidate, facts);
      if (why === undefined) {
        return { engine: filesEngine, ...(candidate === facts.dataDirectory ? {} : { pgdata: candidate }), reason: `the server's data directory ${candidate} is readable here` };
      }
      problems.push(why);
    }
    problem = problems.join('; ');
  } catch (err) {
    if (requested === 'files') throw err;
    problem = `the server's data directory could not be looked up (${(err as Error).message})`;
  }
  if (requested === 'files') {
    throw new UsageError(`--engine files needs the server's data directory on this host: ${problem}`, 'run pgdr on the server\'s host as its OS user (--pgdata for a mount elsewhere), or use --engine basebackup');
  }
  return { engine: baseBackupEngine, reason: problem };
}
