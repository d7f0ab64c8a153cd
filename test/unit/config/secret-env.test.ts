import { describe, expect, it } from 'vitest';
import { secretFromEnv } from '../../../src/config/secret-env.js';
import { UsageError } from '../../../src/errors.js';

describe('secretFromEnv (the NAME / NAME_FILE convention)', () => {
  const files: Record<string, string> = { '/s/crlf': 'value\r\n', '/s/two': 'value\n\n', '/s/plain': 'value', '/s/empty': '\n', '/s/spaces': ' value \n' };
  const read = (path: string) => {
    const text = files[path];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return text;
  };

  it('takes the variable itself, or the file it names, dropping one trailing newline only', () => {
    expect(secretFromEnv('X', { X: 'direct' }, read)).toBe('direct');
    expect(secretFromEnv('X', {}, read)).toBeUndefined();
    expect(secretFromEnv('X', { X: '', X_FILE: '' }, read)).toBeUndefined();
    expect(secretFromEnv('X', { X_FILE: '/s/plain' }, read)).toBe('value');
    expect(secretFromEnv('X', { X_FILE: '/s/crlf' }, read)).toBe('value');
    expect(secretFromEnv('X', { X_FILE: '/s/two' }, read)).toBe('value\n');
    expect(secretFromEnv('X', { X_FILE: '/s/spaces' }, read)).toBe(' value ');
  });

  it.each([
    ['both set', { X: 'a', X_FILE: '/s/plain' }, /both X and X_FILE are set/],
    ['an unreadable file', { X_FILE: '/s/none' }, /cannot read X_FILE \/s\/none \(ENOENT\)/],
    ['an empty file', { X_FILE: '/s/empty' }, /X_FILE \/s\/empty is empty/],
  ])('refuses %s with a usage error that never quotes a value', (_what, env, message) => {
    expect(() => secretFromEnv('X', env, read)).toThrow(UsageError);
    expect(() => secretFromEnv('X', env, read)).toThrow(message);
  });
});
