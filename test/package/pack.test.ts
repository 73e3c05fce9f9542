import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

/**
 * What a user gets from `npm pack` / `npm install -g`: the tarball carries
 * only what runs (no tests, fixtures, Go sources or CI files), installs into
 * a fresh prefix, and its command runs compiled JavaScript without tsx.
 */

const REPO = join(import.meta.dirname, '../..');

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? REPO, encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: 300_000 });
  if (r.error) throw r.error;
  return r;
}

test('the packed tarball installs into a temporary prefix and runs --help, validate and plan (against the in-memory fleet) without tsx', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'k8s-ha-pack-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  // prepack builds dist/.
  const pack = run('npm', ['pack', '--json', '--pack-destination', tmp]);
  assert.equal(pack.status, 0, pack.stderr);
  const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  const files = info!.files.map((f) => f.path);
  assert.ok(files.includes('bin/k8s-ha.js') && files.includes('dist/cli/main.js') && files.includes('dist/src/index.js') && files.includes('dist/src/index.d.ts'), files.join('\n'));
  const stray = files.filter((f) => /^(test|labk3s|scripts|bench|\.ci|src|lab)\//.test(f) || /\.ts$/.test(f.replace(/\.d\.ts$/, '')) || /\.go$/.test(f));
  assert.deepEqual(stray, [], 'the tarball carries files that do not run');

  const prefix = join(tmp, 'prefix');
  const install = run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(tmp, info!.filename)]);
  assert.equal(install.status, 0, install.stderr);
  const pkg = join(prefix, 'lib/node_modules/k8s-ha');
  assert.equal(run('test', ['-e', join(pkg, 'node_modules/tsx')]).status, 1, 'tsx was installed with the package');
  const bin = join(prefix, 'bin/k8s-ha');

  const help = run(bin, ['--help'], { cwd: tmp });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /Usage: k8s-ha <command>/);
  const version = run(bin, ['--version'], { cwd: tmp });
  assert.match(version.stdout, /^k8s-ha \d+\.\d+\.\d+/);
  const validate = run(bin, ['validate', join(pkg, 'examples/seed.yaml')], { cwd: tmp });
  assert.equal(validate.status, 0, validate.stderr);
  assert.match(validate.stdout, /seed\.yaml: valid \(6 hosts/);
  const bad = run(bin, ['validate', join(tmp, 'missing.yaml')], { cwd: tmp });
  assert.equal(bad.status, 2);

  // plan through the package's own command module, on this clone's simulated machines.
  const plan = run(process.execPath, ['--import', 'tsx', join(REPO, 'test/support/package-plan.ts'), join(pkg, 'dist/cli/main.js')]);
  assert.equal(plan.status, 0, plan.stderr);
  const r = JSON.parse(plan.stdout) as { code: number; stdout: string; stderr: string };
  assert.equal(r.code, 0, r.stderr);
  const p = JSON.parse(r.stdout) as { empty: boolean; problems: unknown[]; steps: { host: string }[] };
  assert.equal(p.empty, false);
  assert.deepEqual(p.problems, []);
  assert.equal(new Set(p.steps.map((s) => s.host)).size, 6);
});
