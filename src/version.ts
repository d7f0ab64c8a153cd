import { readFileSync } from 'node:fs';

/** The version in package.json, recorded in every manifest pgdr writes. */
export const PGDR_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();
