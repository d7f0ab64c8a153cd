import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { stageRestoreDirectory, swapRestoreDirectories, type StagingOptions } from '../../../src/restore/target-directory.js';

let root: string;
const logs: string[] = [];
const options = (over: Partial<StagingOptions> = {}): StagingOptions => ({
  force: false,
  what: 'data directory',
  refuseReplace: (_dir, entries) => (entries.includes('PG_VERSION') ? undefined : 'no PG_VERSION'),
  refuseHint: 'check the path',
  log: (m) => logs.push(m),
  ...over,
});

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'pgdr-unit-target-'));
  logs.length = 0;
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function fill(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
}

describe('stageRestoreDirectory', () => {
  it('stages beside an absent target and creates it only at the swap', async () => {
    const target = join(root, 'a', 'pgdata');
    const staged = await stageRestoreDirectory(target, options());
    expect(staged.staging.startsWith(join(root, 'a', '.pgdata.pgdr-restore-'))).toBe(true);
    expect(statSync(staged.staging).mode & 0o777).toBe(0o700);
    expect(existsSync(target)).toBe(false);
    writeFileSync(join(staged.staging, 'PG_VERSION'), '15\n');
    await swapRestoreDirectories([staged], () => undefined);
    expect(readFileSync(join(target, 'PG_VERSION'), 'utf8')).toBe('15\n');
    expect(readdirSync(join(root, 'a'))).toEqual(['pgdata']);
  });

  it('replaces an empty directory', async () => {
    const target = join(root, 'pgdata');
    mkdirSync(target);
    const staged = await stageRestoreDirectory(target, options());
    expect(staged.replacing).toBe(false);
    writeFileSync(join(staged.staging, 'PG_VERSION'), '15\n');
    await swapRestoreDirectories([staged], () => undefined);
    expect(readdirSync(target)).toEqual(['PG_VERSION']);
  });

  it('refuses a non-empty target without --force, and with --force one the caller refuses, deleting nothing', async () => {
    const target = join(root, 'home');
    fill(target, { 'notes.txt': 'precious' });
    await expect(stageRestoreDirectory(target, options())).rejects.toThrow(/is not empty/);
    const refused = stageRestoreDirectory(target, options({ force: true }));
    await expect(refused).rejects.toBeInstanceOf(UsageError);
    await expect(refused).rejects.toThrow(/--force refused .*no PG_VERSION; nothing was deleted/);
    expect(readdirSync(root)).toEqual(['home']);
    expect(readFileSync(join(target, 'notes.txt'), 'utf8')).toBe('precious');
  });

  it('with --force keeps the old directory until the swap, and removes it after', async () => {
    const target = join(root, 'pgdata');
    fill(target, { PG_VERSION: '15\n', old: 'old' });
    const staged = await stageRestoreDirectory(target, options({ force: true }));
    expect(staged.replacing).toBe(true);
    fill(staged.staging, { PG_VERSION: '15\n', new: 'new' });
    expect(readFileSync(join(target, 'old'), 'utf8')).toBe('old');
    const messages: string[] = [];
    await swapRestoreDirectories([staged], (m) => messages.push(m));
    expect(readdirSync(target).sort()).toEqual(['PG_VERSION', 'new']);
    expect(readdirSync(root)).toEqual(['pgdata']);
    expect(messages.join('\n')).toMatch(/old data directory is kept at .*pgdr-replaced-.* until the new one is in place/);
  });

  it('discard leaves the target exactly as it was', async () => {
    const target = join(root, 'pgdata');
    fill(target, { PG_VERSION: '15\n', old: 'old' });
    const staged = await stageRestoreDirectory(target, options({ force: true }));
    fill(staged.staging, { half: 'written' });
    await staged.discard();
    expect(readdirSync(root)).toEqual(['pgdata']);
    expect(readdirSync(target).sort()).toEqual(['PG_VERSION', 'old']);
  });

  it('restores where a symlinked data directory points', async () => {
    const real = join(root, 'volume', 'pg');
    fill(real, { PG_VERSION: '15\n' });
    const link = join(root, 'pgdata');
    symlinkSync(real, link);
    const staged = await stageRestoreDirectory(link, options({ force: true }));
    expect(staged.target).toBe(real);
    fill(staged.staging, { PG_VERSION: '15\n', fresh: 'yes' });
    await swapRestoreDirectories([staged], () => undefined);
    expect(readdirSync(link).sort()).toEqual(['PG_VERSION', 'fresh']);
  });

  it('undoes earlier swaps when a later one fails, so all targets stay old', async () => {
    const first = join(root, 'pgdata');
    fill(first, { PG_VERSION: '15\n', old: '1' });
    const second = join(root, 'ts');
    fill(second, { PG_VERSION: '15\n', old: '2' });
    const a = await stageRestoreDirectory(first, options({ force: true }));
    const b = await stageRestoreDirectory(second, options({ force: true }));
    fill(a.staging, { PG_VERSION: '15\n', new: '1' });
    rmSync(b.staging, { recursive: true });
    await expect(swapRestoreDirectories([a, b], () => undefined)).rejects.toThrow();
    expect(readdirSync(first).sort()).toEqual(['PG_VERSION', 'old']);
    expect(readdirSync(second).sort()).toEqual(['PG_VERSION', 'old']);
    expect(readdirSync(root).sort()).toEqual(['pgdata', 'ts']);
  });

  it("removes a dead restore's staging directory, and refuses when a swap was cut with the target gone", async () => {
    const target = join(root, 'pgdata');
    // pid 2^22+1 is above Linux's pid_max default, so no process has it.
    fill(join(root, `.pgdata.pgdr-restore-4194305-abcd`), { half: 'x' });
    const staged = await stageRestoreDirectory(target, options());
    expect(existsSync(join(root, '.pgdata.pgdr-restore-4194305-abcd'))).toBe(false);
    expect(logs.join('\n')).toMatch(/left by an interrupted restore/);
    await staged.discard();

    fill(join(root, '.pgdata.pgdr-replaced-4194305-abcd'), { PG_VERSION: '15\n' });
    await expect(stageRestoreDirectory(target, options())).rejects.toThrow(/an interrupted restore was replacing, and the target is missing/);
    expect(existsSync(join(root, '.pgdata.pgdr-replaced-4194305-abcd', 'PG_VERSION'))).toBe(true);
  });

  it('refuses when the file system lacks the room for the restore beside the old directory', async () => {
    const target = join(root, 'pgdata');
    fill(target, { PG_VERSION: '15\n' });
    await expect(stageRestoreDirectory(target, options({ force: true, expectedBytes: Number.MAX_SAFE_INTEGER }))).rejects.toThrow(
      /not enough free space .*old directory is kept until the new one is complete/,
    );
    expect(readdirSync(root)).toEqual(['pgdata']);
  });
});
