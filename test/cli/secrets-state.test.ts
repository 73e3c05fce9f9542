import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { StateFile } from '../../src/cluster/state.js';
import type { ClusterHost } from '../../src/spec/cluster.js';
import { ConnectionError, type Host } from '../../src/transport/host.js';
import { simulatedFleet } from '../support/fleet.js';
import { offlineCluster } from '../support/offline-example.js';
import { runCli, tempDir } from './helpers.js';

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');

const stateSecrets = (file: string): Record<string, string> =>
  existsSync(StateFile.pathFor(file)) ? ((parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { secrets?: Record<string, string> }).secrets ?? {}) : {};

test('a plan that fails with the servers unreachable keeps no generated secret; the next run adopts the servers token and says so in plain output', async (t) => {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(SEED, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const hooks = { open: { connect: fleet.connect } };
  assert.equal((await runCli(['apply', '--yes', '--no-verify', '-f', file], { cwd: dir, hooks })).code, 0);
  const token = stateSecrets(file).k3sToken!;
  // The state file is lost; the servers cannot be reached for now.
  rmSync(StateFile.pathFor(file));
  const serversDown = (h: ClusterHost): Promise<Host> =>
    h.roles.includes('server') ? Promise.reject(new ConnectionError(h.name, `${h.address}:22`, 'connecting', 'connection refused')) : fleet.connect(h);
  const failed = await runCli(['plan', '-f', file], { cwd: dir, hooks: { open: { connect: serversDown } } });
  assert.notEqual(failed.code, 0, failed.stdout);
  assert.deepEqual(stateSecrets(file), {}, 'the failed plan left generated secrets in the state file');

  // Back up: the token the servers run with is taken, not refused as "different".
  const plan = await runCli(['plan', '-f', file], { cwd: dir, hooks });
  assert.doesNotMatch(plan.stdout + plan.stderr, /different token/);
  assert.match(plan.stdout + plan.stderr, /warning: .*held no k3s token, but server1 already runs k3s/);
  assert.equal(stateSecrets(file).k3sToken, token);
});

test('plan keeps no generated secret in the state file; apply keeps the ones it used', async (t) => {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(SEED, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const hooks = { open: { connect: fleet.connect } };
  assert.equal((await runCli(['plan', '-f', file], { cwd: dir, hooks })).code, 0);
  assert.deepEqual(stateSecrets(file), {});
  assert.equal((await runCli(['apply', '--yes', '--no-verify', '-f', file], { cwd: dir, hooks })).code, 0);
  const kept = stateSecrets(file);
  assert.ok(kept.k3sToken && kept.datastorePassword);
  assert.ok(fleet.hosts.get('server1')!.text('/etc/rancher/k3s/config.yaml')!.includes(kept.k3sToken));
});

test("the cluster file's warnings show in the plain output of plan and apply, and in plan --json", async (t) => {
  const dir = tempDir(t);
  // A literal password is allowed, with a warning.
  const { file, text } = offlineCluster({ text: readFileSync(SEED, 'utf8').replace('password: generate', 'password: LiteralPassword123') }, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const hooks = { open: { connect: fleet.connect } };
  for (const argv of [['plan'], ['apply', '--yes', '--no-verify'], ['plan', '--json']]) {
    const r = await runCli([...argv, '-f', file], { cwd: dir, hooks });
    assert.match(r.stdout + r.stderr, /warning.*datastore\.password.*a literal secret is written in the cluster file/, `${argv.join(' ')}: ${r.stderr}`);
    assert.ok(!(r.stdout + r.stderr).includes('LiteralPassword123'));
  }
});
