import assert from 'node:assert/strict';
import { test } from 'node:test';
import { labSkipReason, labTestsMustRun, skipOrFail } from '../../lab/testing.js';

const root = process.getuid?.() === 0;

test('outside CI a lab test that cannot run skips, with the reason', async () => {
  assert.equal(skipOrFail('the lab\'s k3s is missing', {}), 'the lab\'s k3s is missing');
  assert.equal(skipOrFail(null, {}), false);
  assert.equal(await labSkipReason({ K8S_HA_NO_LAB: '1' }), 'K8S_HA_NO_LAB=1');
});

test('in CI as root a lab test that cannot run fails, naming why', { skip: root ? false : 'needs root (CI runs as root)' }, async () => {
  const ci = { CI: 'true' };
  assert.equal(labTestsMustRun(ci), true);
  assert.throws(() => skipOrFail('the lab\'s k3s is missing', ci), /CI=true as root: this lab test must run, but the lab's k3s is missing/);
  assert.equal(skipOrFail(null, ci), false);
  await assert.rejects(labSkipReason({ ...ci, K8S_HA_NO_LAB: '1' }), /must run, but K8S_HA_NO_LAB=1/);
  assert.equal(labTestsMustRun({ CI: 'false' }), false);
});
