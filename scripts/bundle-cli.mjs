// Part of `npm run build`, after tsc: bundles the full CLI (dist/cli/entry.js and everything it imports, npm
// packages included) into dist/bundle/, which bin/pgdr loads. Loading some three hundred ES modules one by one cost
// every command a quarter of a second before it did anything (a restore's recovery runs `wal fetch` several times,
// a CronJob runs a command a night); one file per lazily loaded part (esbuild's code splitting) keeps what is loaded
// on demand (the AWS SDK, etcd's gRPC client, age-encryption) on demand. dist/ keeps the modules tsc wrote: the
// bundled `wal push` (scripts/bundle-wal-push.mjs) and worker threads load from there.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = resolve(root, 'dist', 'bundle');
rmSync(outdir, { recursive: true, force: true });

await build({
  entryPoints: [resolve(root, 'dist', 'cli', 'entry.js')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  // Error classes are recognised by name across bundles and dist/ (isInstanceByName in src/errors.ts): never rename.
  keepNames: true,
  // Optional native parts of dependencies, which they load in a try and do without; and etcd3 with gRPC, which read
  // their .proto files from beside their own modules (and load only for commands that talk to etcd).
  external: ['pg-native', 'cpu-features', 'ssh2', 'etcd3', '@grpc/grpc-js', '@grpc/proto-loader'],
  // Bundled CommonJS packages (pg, etcd3) call require() for Node's own modules: give the ES module bundle one.
  banner: { js: "import { createRequire as __pgdrCreateRequire } from 'node:module'; const require = __pgdrCreateRequire(import.meta.url);" },
});
