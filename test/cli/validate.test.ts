import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, tempDir } from './helpers.js';
import { homeWithKeys } from '../support/home.js';

const seed = join(import.meta.dirname, '../../examples/seed.yaml');

test('validate accepts the seed example and names the API address', async (t) => {
  const dir = tempDir(t);
  homeWithKeys(dir); // the seed's ~/.ssh/id_ed25519 (runCli's HOME is the directory)
  copyFileSync(seed, join(dir, 'cluster.yaml'));
  const r = await runCli(['validate'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /cluster\.yaml: valid \(6 hosts, API at https:\/\/192\.168\.0\.156:6443\)/);
});

test('validate reports every problem of a broken file at once, with line, path and fix, and exits 2', async (t) => {
  const dir = tempDir(t);
  const broken = readFileSync(seed, 'utf8')
    .replace('address: 192.168.0.158', 'address: 192.168.0.157') // duplicate address
    .replaceAll('192.168.0.170-192.168.0.175', '192.168.0.160-192.168.0.165') // pool overlaps agents
    .replace('kind: mariadb', 'kind: postgres');
  writeFileSync(join(dir, 'bad.yaml'), broken);
  const r = await runCli(['validate', '-f', 'bad.yaml'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /bad\.yaml:\d+:\d+: error hosts\[2\]\.address: /);
  assert.match(r.stderr, /datastore\.kind/);
  assert.match(r.stderr, /metallb\.pools\[0\]\.addresses/);
  assert.match(r.stderr, /fix: /);
  assert.match(r.stderr, /bad\.yaml: 5 errors, 0 warnings/);
});

test('validate --json lists the problems as data', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'c.yaml'), 'apiVersion: k8s-ha/v1\nname: x\nhosts: []\n');
  const r = await runCli(['validate', '-f', 'c.yaml', '--json'], { cwd: dir });
  assert.equal(r.code, 2);
  const j = JSON.parse(r.stdout) as { valid: boolean; problems: { path: string; message: string }[] };
  assert.equal(j.valid, false);
  assert.ok(j.problems.length >= 1);
});

test('a missing cluster file is a usage error that says how to make one', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['validate'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /cannot read .*cluster\.yaml: no such file/);
  assert.match(r.stderr, /k8s-ha init/);
});

test('an unknown flag exits 2 and points at the command help', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['plan', '--frobnicate'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /plan: unknown option '--frobnicate'.*k8s-ha plan --help/);
});

test('an unknown command exits 2', async (t) => {
  const r = await runCli(['destroy-everything'], { cwd: tempDir(t) });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "destroy-everything"/);
});

test('schema prints a JSON Schema with the cluster file sections', async (t) => {
  const r = await runCli(['schema'], { cwd: tempDir(t) });
  assert.equal(r.code, 0);
  const s = JSON.parse(r.stdout) as { properties: Record<string, unknown> };
  for (const k of ['hosts', 'loadBalancer', 'datastore', 'k3s', 'metallb']) assert.ok(k in s.properties, k);
});

test('init writes a starter file that validates, and refuses to overwrite without --force', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['init', '-o', 'c.yaml', '--name', 'home', '--lb', '10.1.0.10', '--servers', '10.1.0.11,10.1.0.12', '--agents', '10.1.0.21', '--pool', '10.1.0.200-10.1.0.210'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  const v = await runCli(['validate', '-f', 'c.yaml'], { cwd: dir });
  assert.equal(v.code, 0, v.stderr + v.stdout);
  const again = await runCli(['init', '-o', 'c.yaml'], { cwd: dir });
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already exists.*--force/);
});

test('init asks its questions on a terminal', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['init'], { cwd: dir, tty: true, answers: ['lab', '10.9.0.1', '10.9.0.2,10.9.0.3', '10.9.0.4', '10.9.0.100-10.9.0.110'] });
  assert.equal(r.code, 0, r.stderr);
  const text = readFileSync(join(dir, 'cluster.yaml'), 'utf8');
  assert.match(text, /name: lab/);
  assert.match(text, /10\.9\.0\.100-10\.9\.0\.110/);
});
