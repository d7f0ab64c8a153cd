// Part of `npm run build`, after tsc: bundles `wal push` (dist/cli/wal-push-main.js and everything it imports) into
// one CommonJS file, dist/cli/wal-push.cjs, which bin/pgdr loads with require(). PostgreSQL starts `wal push` once per
// WAL segment, and loading some forty small ES modules cost it more than compressing the segment
// (docs/benchmarks.md, "Where the time of a push goes").
//
// What a push loads only on demand stays outside the bundle and is imported from dist/ when needed: the full CLI
// (a command line the push entry does not read), the config-file schema (with --config), the policy (under Object Lock), the S3 driver with the AWS SDK.
import { build } from 'esbuild';
import { writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = resolve(root, 'dist');
const outfile = resolve(dist, 'cli', 'wal-push.cjs');
const LOADED_ON_DEMAND = ['cli/main.js', 'config/settings.js', 'config/policy.js', 'storage/s3-store.js'].map((file) => resolve(dist, file));
// The only npm package a push may load: anything else (zod, yaml, commander, execa, the AWS SDK...) costs a cold push
// tens of milliseconds, so a change that pulls one in fails the build instead of slowing archive_command unnoticed.
const BUNDLED_PACKAGES = ['signal-exit'];

const onDemandFromDist = {
  name: 'on-demand-from-dist',
  setup(build) {
    build.onResolve({ filter: /^\.\.?\// }, (args) => {
      if (args.kind !== 'dynamic-import') return undefined;
      const target = resolve(args.resolveDir, args.path);
      if (!LOADED_ON_DEMAND.includes(target)) return undefined;
      const fromBundle = relative(dirname(outfile), target);
      return { path: fromBundle.startsWith('.') ? fromBundle : `./${fromBundle}`, external: true };
    });
  },
};

const result = await build({
  entryPoints: [resolve(dist, 'cli', 'wal-push-main.js')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  metafile: true,
  // Error classes are recognised by name across the bundle and dist/ (isInstanceByName in src/errors.ts): never rename.
  keepNames: true,
  // Written below, once the bundle is known to hold only what it may.
  write: false,
  plugins: [onDemandFromDist],
  // The bundled modules find pgdr's own files from their location (src/package-root.ts): in CommonJS that is __filename.
  define: { 'import.meta.url': '__pgdr_bundle_url' },
  banner: { js: "const __pgdr_bundle_url = require('node:url').pathToFileURL(__filename).href;" },
});

const packages = new Set(
  Object.keys(result.metafile.inputs)
    .map((input) => /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1])
    .filter((name) => name !== undefined),
);
const unexpected = [...packages].filter((name) => !BUNDLED_PACKAGES.includes(name));
if (unexpected.length > 0) {
  process.stderr.write(
    `scripts/bundle-wal-push.mjs: wal push would load ${unexpected.join(', ')}; import it only where a push does not reach, ` +
      'or load it on demand (see LOADED_ON_DEMAND)\n',
  );
  process.exit(1);
}
for (const file of result.outputFiles) writeFileSync(file.path, file.contents);
