#!/usr/bin/env node
// The k8s-ha command. An installed package runs the compiled dist/ (no
// TypeScript at run time). A clone runs dist/ too once `npm run build` made
// it after the last change to the sources (dist/.built is newer than every
// file under src/ and lab/); otherwise it runs the sources through tsx (a
// devDependency), so a clone always runs what is checked out — built or not.
import { existsSync, readdirSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const dist = new URL('dist/cli/main.js', root);
const src = new URL('src/cli/main.ts', root);

/** The newest modification time of the .ts files below `dir` (0 when there is none). */
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = new URL(e.name + (e.isDirectory() ? '/' : ''), dir);
    if (e.isDirectory()) t = Math.max(t, newest(p));
    else if (e.name.endsWith('.ts')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

function distIsCurrent() {
  if (!existsSync(dist)) return false;
  if (!existsSync(src)) return true; // the installed package: dist/ is all there is
  const stamp = new URL('dist/.built', root);
  if (!existsSync(stamp)) return false;
  const built = statSync(stamp).mtimeMs;
  return ['src/', 'lab/'].every((d) => !existsSync(new URL(d, root)) || newest(new URL(d, root)) <= built);
}

let main;
if (distIsCurrent()) {
  main = await import(dist.href);
} else {
  try {
    const { register } = await import('tsx/esm/api');
    register();
  } catch {
    process.stderr.write('k8s-ha: dist/ is missing or older than the sources, and tsx is not installed: run `npm ci && npm run build`\n');
    process.exit(1);
  }
  main = await import(src.href);
}
await main.run();
