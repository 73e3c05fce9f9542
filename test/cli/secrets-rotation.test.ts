import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, parseDocument } from 'yaml';
import { StateFile } from '../../src/cluster/state.js';
import { simulatedFleet, type Fleet } from '../support/fleet.js';
import { offlineCluster } from '../support/offline-example.js';
import { runCli, tempDir, type CliResult } from './helpers.js';

/**
 * Rotating a secret: the plan shows a diff whose `-` side holds the secret
 * the hosts run with now and whose `+` side holds the new one. Neither may
 * show in `plan`, `plan --json`, or what `apply` prints (plain or JSON).
 */

const HA_VIP = join(import.meta.dirname, '../../examples/ha-vip-haproxy.yaml');

interface Rotation {
  label: string;
  /** The field of the cluster file that gets the new value, and the state file's name of the old one. */
  path: string[];
  state: string;
  /** The new value (keepalived reads only 8 characters of a VRRP password). */
  value: string;
  /** What apply says instead of rotating, for a secret a running cluster cannot change. */
  refused?: RegExp;
}

const ROTATIONS: Rotation[] = [
  { label: 'the datastore password', path: ['datastore', 'password'], state: 'datastorePassword', value: 'NewDatastorePassw0rd2026' },
  { label: 'the k3s token', path: ['k3s', 'token'], state: 'k3sToken', value: 'NewClusterToken0123456789abcdef', refused: /already belongs to a k3s cluster made with a different token/ },
  { label: 'the agent token', path: ['k3s', 'agentToken'], state: 'agentToken', value: 'NewAgentToken0123456789abcdefgh', refused: /cannot be changed on a running cluster/ },
  { label: 'the VRRP password', path: ['loadBalancer', 'virtualIP', 'authPass'], state: 'vrrpPass', value: 'Vr9pNew7' },
];

async function appliedCluster(t: { after: (fn: () => void) => void }): Promise<{ dir: string; file: string; fleet: Fleet; old: Record<string, string> }> {
  const dir = tempDir(t);
  // An agent token too, so that every secret kind is in play.
  const doc = parseDocument(readFileSync(HA_VIP, 'utf8'));
  doc.setIn(['k3s', 'agentToken'], 'generate');
  const { file, text } = offlineCluster({ text: doc.toString() }, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const first = await runCli(['apply', '--yes', '--no-verify', '-f', file], { cwd: dir, hooks: { open: { connect: fleet.connect } } });
  assert.equal(first.code, 0, first.stderr + first.stdout);
  const old = (parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { secrets: Record<string, string> }).secrets;
  // keepalived.conf carries the first 8 characters of the generated VRRP password.
  old.vrrpPass = old.vrrpPass!.slice(0, 8);
  return { dir, file, fleet, old };
}

function assertHidden(outputs: CliResult[], values: Record<string, string>): void {
  const shown = outputs.flatMap((r) => [r.stdout, r.stderr]).join('\n');
  for (const [name, v] of Object.entries(values)) assert.ok(!shown.includes(v), `${name} (${v.slice(0, 3)}...) is shown:\n${shown.split('\n').filter((l) => l.includes(v)).join('\n')}`);
}

for (const r of ROTATIONS) {
  test(`rotating ${r.label} shows neither the old nor the new value in plan, plan --json or apply`, async (t) => {
    const { dir, file, fleet, old } = await appliedCluster(t);
    const doc = parseDocument(readFileSync(file, 'utf8'));
    doc.setIn(r.path, '${env:ROTATED_SECRET}');
    writeFileSync(file, doc.toString());
    const opts = { cwd: dir, env: { ROTATED_SECRET: r.value }, hooks: { open: { connect: fleet.connect } } };
    const outputs: CliResult[] = [];
    for (const argv of [['plan'], ['plan', '--json'], ['apply', '--yes', '--no-verify'], ['plan'], ['apply', '--yes', '--no-verify', '--json']]) {
      outputs.push(await runCli([...argv, '-f', file], opts));
    }
    // The rotation went through, or was refused with its reason (either way the test saw what a user sees).
    for (const i of [2, 4]) {
      const r2 = outputs[i]!;
      if (r.refused) {
        assert.notEqual(r2.code, 0);
        assert.match(r2.stderr + r2.stdout, r.refused);
      } else assert.equal(r2.code, 0, r2.stderr + r2.stdout);
    }
    // The plan did show that the secret changes (masked), so the test looked at a real rotation.
    assert.match(outputs[0]!.stdout, /\*{8}/, outputs[0]!.stdout + outputs[0]!.stderr);
    assertHidden(outputs, { [`old ${r.state}`]: old[r.state]!, [`new ${r.state}`]: r.value });
  });
}

test('a token whose source changed (generate to a file) shows neither value, nor any other secret of the state file', async (t) => {
  const { dir, file, fleet, old } = await appliedCluster(t);
  writeFileSync(join(dir, 'db.pass'), 'FromAFileDatastorePassword77\n', { mode: 0o600 });
  const doc = parseDocument(readFileSync(file, 'utf8'));
  doc.setIn(['datastore', 'password'], doc.createNode({ file: 'db.pass' }));
  doc.setIn(['k3s', 'agentToken'], '${env:AGENT}');
  writeFileSync(file, doc.toString());
  const opts = { cwd: dir, env: { AGENT: 'AgentTokenFromTheEnvironment99' }, hooks: { open: { connect: fleet.connect } } };
  const outputs = [await runCli(['plan', '-f', file], opts), await runCli(['plan', '--json', '-f', file], opts), await runCli(['apply', '--yes', '--no-verify', '-f', file], opts)];
  // A running cluster's agent token cannot change: refused, with its reason (and still nothing shown).
  assert.notEqual(outputs[2]!.code, 0);
  assert.match(outputs[2]!.stderr, /agent-token \(secret\).*cannot be changed on a running cluster/);
  assertHidden(outputs, { ...old, newPassword: 'FromAFileDatastorePassword77', newAgentToken: 'AgentTokenFromTheEnvironment99' });
});
