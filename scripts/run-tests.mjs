#!/usr/bin/env node
// Runs every test file in one node:test run, so the run ends with one summary
// (`# pass N` / `# fail N`). Test files run one at a time: lab tests boot real
// machines and must never overlap (lab/lock.ts also guards against it).
//   --no-lab   skip test/lab (no root, no machines)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const noLab = args.includes('--no-lab') || process.env.K8S_HA_NO_LAB === '1';
const only = args.filter((a) => !a.startsWith('--'));

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

let files = walk('test');
if (noLab) files = files.filter((f) => !f.startsWith(join('test', 'lab')));
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
// Pure and in-memory tests first, then the lab tests.
files.sort((a, b) => Number(a.startsWith(join('test', 'lab'))) - Number(b.startsWith(join('test', 'lab'))) || a.localeCompare(b));

const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
