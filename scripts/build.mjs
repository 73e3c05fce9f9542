#!/usr/bin/env node
// `npm run build` (and `npm pack`'s prepack), from scratch so no stale file
// of a deleted module survives:
//   dist/src/, dist/lab/  the library (tsc: JavaScript and type declarations)
//   dist/cli/             the command, bundled (esbuild): start-up is mostly
//                         module loading, and one file per command instead of
//                         hundreds halves it (docs/performance.md). Commands
//                         stay separate chunks, loaded when run.
// Then dist/.built is stamped: bin/k8s-ha.js runs dist/ from a clone only
// while the stamp is newer than every source file.
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
if (r.status !== 0) process.exit(r.status ?? 1);
await build({
  entryPoints: [join(root, 'src/cli/main.ts')],
  outdir: join(dist, 'cli'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // ssh2 has optional native parts and age-encryption is loaded only by backup: both stay packages.
  external: ['ssh2', 'age-encryption'],
  // Bundled CommonJS modules may call require().
  banner: { js: "import { createRequire as __k8sHaRequire } from 'node:module'; const require = __k8sHaRequire(import.meta.url);" },
  logLevel: 'warning',
});
writeFileSync(join(dist, '.built'), `${new Date().toISOString()}\n`);
