import { PGDR_PACKAGE } from './package-root.js';

/** The version in package.json, recorded in every manifest pgdr writes. */
export const PGDR_VERSION: string = PGDR_PACKAGE?.version ?? '0.0.0';
