import type { Settings } from '../config/resolve-settings.js';
import { secretFromEnv } from '../config/secret-env.js';
import { identityIsProtected } from '../stream/age-buffer.js';

/**
 * Opens a passphrase-protected identity file before the command runs (see src/stream/age-passphrase.ts), so that a
 * wrong or missing passphrase is exit 2 before anything is read or written. age-encryption and the scrypt it costs
 * (about a second) are paid only when the identity file is protected.
 */
export async function unlockIdentity(settings: Settings, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (settings.identityFile === undefined) return;
  const passphrase = secretFromEnv('PGDR_PASSPHRASE', env);
  if (passphrase === undefined && !identityIsProtected(settings.identityFile)) return;
  const { unlockIdentityFile } = await import('../stream/age-passphrase.js');
  await unlockIdentityFile(settings.identityFile, passphrase, env.PGDR_PASSPHRASE_FILE ? 'PGDR_PASSPHRASE_FILE' : 'PGDR_PASSPHRASE');
}
