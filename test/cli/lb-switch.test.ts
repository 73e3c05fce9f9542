import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { simulatedFleet } from '../support/fleet.js';
import { offlineCluster } from '../support/offline-example.js';
import { runCli, tempDir } from './helpers.js';

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');

test('switching the load balancer from nginx to HAProxy: the plan says there is a gap and how long, and no interrupt leaves the API port without a daemon', async (t) => {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(SEED, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const hooks = { open: { connect: fleet.connect } };
  assert.equal((await runCli(['apply', '--yes', '--no-verify', '-f', file], { cwd: dir, hooks })).code, 0);
  writeFileSync(file, readFileSync(file, 'utf8').replace('kind: nginx', 'kind: haproxy'));

  const plan = await runCli(['plan', '-f', file], { cwd: dir, hooks });
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, /warning loadBalancer\.kind: infra switches from nginx to haproxy: .*refuses connections from the stop of nginx until haproxy has started — one step of the apply/);
  // One change stops the old daemon and starts the new one.
  assert.match(plan.stdout, /stop and disable nginx, then at once (start|restart) haproxy/);

  // Ctrl-C as the switch starts: the engine stops between changes, never between the stop and the start.
  const controller = new AbortController();
  const infra = fleet.hosts.get('infra')!;
  // The abort comes exactly as the old daemon's stop is sent (the matcher never claims the command).
  infra.failNext((cmd) => (/systemctl disable --now nginx/.test(cmd) && controller.abort(), false));
  const r = await runCli(['apply', '--yes', '--no-verify', '-f', file], { cwd: dir, hooks: { ...hooks, signal: controller.signal } });
  assert.ok(controller.signal.aborted, 'the stop was never sent');
  assert.equal(r.code, 130, r.stderr);
  assert.equal(infra.services.get('haproxy')?.active, true, 'haproxy is not running after the switch');
  assert.notEqual(infra.services.get('nginx')?.active, true);
});
