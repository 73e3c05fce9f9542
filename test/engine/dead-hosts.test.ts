import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import type { ClusterHost } from '../../src/spec/cluster.js';
import { ConnectionError } from '../../src/transport/host.js';
import { runCli, tempDir } from '../cli/helpers.js';
import { simulatedFleet, type Fleet } from '../support/fleet.js';
import { offlineCluster } from '../support/offline-example.js';

/**
 * Hosts that stop answering, on the simulated fleet through the whole
 * pipeline (engine/pipeline.ts via the CLI): an agent that cannot be reached
 * no longer blocks the rest, a server that cannot be reached still stops
 * everything, and a server frozen in the middle of an apply fails after
 * waits.noProgress instead of the 5-minute readiness bound.
 */

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');

function setup(t: { after: (fn: () => void) => void }, edit?: (doc: ReturnType<typeof parseDocument>) => void) {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(SEED, dir);
  const doc = parseDocument(text);
  edit?.(doc);
  writeFileSync(file, String(doc));
  const fleet = simulatedFleet(String(doc), { env: { HOME: dir } });
  return { dir, file, fleet };
}

/** The fleet's connect, except that `down` hosts refuse the connection as an unreachable machine does. */
function connectExcept(fleet: Fleet, down: string[]) {
  return async (h: ClusterHost) => {
    if (down.includes(h.name)) throw new ConnectionError(h.name, `${h.address}:22`, 'connecting', 'no answer within 10 s (timed out)', 'check that the machine is up and reachable');
    return fleet.connect(h);
  };
}

const writesOn = (fleet: Fleet) => [...fleet.hosts.values()].reduce((n, h) => n + h.writes.length, 0);

test('plan with an unreachable agent plans every other host, names the agent and exits 1', async (t) => {
  const s = setup(t);
  const r = await runCli(['plan', '-f', s.file], { cwd: s.dir, hooks: { open: { connect: connectExcept(s.fleet, ['agent3']) } } });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /Unreachable \(left out of this run; nothing planned for them\):\n {2}agent3: no answer within 10 s/);
  assert.match(r.stdout, /agent1:/);
  assert.doesNotMatch(r.stdout, /^ {2}agent3:$/m, 'nothing is planned for agent3');
  const j = await runCli(['plan', '-f', s.file, '--json'], { cwd: s.dir, hooks: { open: { connect: connectExcept(s.fleet, ['agent3']) } } });
  assert.deepEqual((JSON.parse(j.stdout) as { unreachable: { host: string }[] }).unreachable.map((u) => u.host), ['agent3']);
});

test('apply with an unreachable agent converges every other host (MetalLB included), names the agent and exits 1; the next apply does only the agent', async (t) => {
  const s = setup(t);
  const r = await runCli(['apply', '-f', s.file, '--yes'], { cwd: s.dir, hooks: { open: { connect: connectExcept(s.fleet, ['agent3']) } } });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /agent3 could not be reached, so nothing was done there:\n {2}- agent3: no answer within 10 s/);
  assert.match(r.stderr, /run apply again; verify was skipped/);
  assert.match(r.stdout, /Applied \d+ changes/);
  for (const a of ['agent1', 'agent2']) assert.equal(s.fleet.hosts.get(a)!.services.get('k3s-agent')?.active, true, `${a} joined`);
  assert.equal(s.fleet.hosts.get('agent3')!.writes.length, 0);
  // Back again: what is left to do is agent3's alone.
  const p = await runCli(['plan', '-f', s.file, '--json'], { cwd: s.dir, hooks: { open: { connect: s.fleet.connect } } });
  assert.equal(p.code, 0, p.stderr);
  const plan = JSON.parse(p.stdout) as { steps: { host: string; phase: string }[] };
  assert.deepEqual([...new Set(plan.steps.map((st) => st.host))], ['agent3'], JSON.stringify(plan.steps.map((st) => `${st.phase}/${st.host}`)));
});

test('an unreachable server still stops plan and apply before any host is changed, naming it', async (t) => {
  const s = setup(t);
  for (const cmd of ['plan', 'apply']) {
    const r = await runCli([cmd, '-f', s.file, '--yes'].slice(0, cmd === 'plan' ? 3 : 4), { cwd: s.dir, hooks: { open: { connect: connectExcept(s.fleet, ['server2']) } } });
    assert.equal(r.code, 1, `${cmd}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /server2 \(192\.168\.0\.158:22\): connecting: no answer within 10 s/, cmd);
  }
  assert.equal(writesOn(s.fleet), 0, 'no host was changed');
});

test('a server frozen right after its restart fails the apply after waits.noProgress, naming it and the last state seen, not after the 5-minute bound', async (t) => {
  const s = setup(t, (doc) => doc.setIn(['waits'], doc.createNode({ noProgress: '5s' })));
  // Frozen once the restart is queued and its marker cleared: only the readiness wait meets it.
  s.fleet.freezeAfter('server2', /systemctl --no-block restart k3s$/, 1);
  const t0 = Date.now();
  const r = await runCli(['apply', '-f', s.file, '--yes'], { cwd: s.dir, hooks: { open: { connect: s.fleet.connect } } });
  const took = Date.now() - t0;
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /server2: k3s server not ready: no progress for [\d.]+ s \(waits\.noProgress\), well before the 300 s bound; last seen: no answer from server2: the connection was lost \(simulated\)/);
  assert.ok(r.stderr.length < 2_000, 'the error does not carry the whole probe command');
  assert.ok(took < 20_000, `took ${took} ms`);
  // server1 was ready before server2 was touched; no agent was started after the failure.
  assert.equal(s.fleet.hosts.get('server1')!.services.get('k3s')?.active, true);
  for (const a of ['agent1', 'agent2', 'agent3']) assert.notEqual(s.fleet.hosts.get(a)!.services.get('k3s-agent')?.active, true, a);
});
