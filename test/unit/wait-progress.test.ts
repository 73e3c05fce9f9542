import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lastSeenText, waitUntil } from '../../src/phases/k3s-health.js';
import { ConnectionError } from '../../src/transport/host.js';

const opts = { timeoutMs: 2_000, intervalMs: 5, noProgressMs: 60 };

test('a wait whose host keeps making progress (the journal moves) runs to its overall bound, not the no-progress one', async () => {
  let n = 0;
  const t0 = Date.now();
  const r = await waitUntil({ ...opts, timeoutMs: 300 }, async () => ({ why: 'readyz: [-]poststarthook failed', progress: `cursor ${n++}` }));
  assert.equal(r?.stalledMs, undefined);
  assert.ok(Date.now() - t0 >= 290, 'ran to the overall bound');
});

test('a wait that sees the same thing for noProgressMs gives up early, saying how long it stalled', async () => {
  const t0 = Date.now();
  const r = await waitUntil(opts, async () => ({ why: 'k3s has not signalled READY', progress: 'same' }));
  assert.ok(r && r.stalledMs !== undefined && r.stalledMs >= 60);
  assert.ok(Date.now() - t0 < 1_000);
  assert.equal(r.last, 'k3s has not signalled READY');
});

test('a host that stops answering is reported with its last answer, and the probe command is not in the message', async () => {
  let n = 0;
  const r = await waitUntil(opts, async () => {
    if (n++ < 2) return { why: 'readyz answered "etcd not ready"', progress: `p${n}` };
    throw new ConnectionError('server2', '10.0.0.2:22', 'running `a very long probe command`', 'the connection was lost after 3 missed keepalives');
  });
  assert.ok(r?.stalledMs !== undefined);
  assert.equal(lastSeenText(r), 'no answer from server2: the connection was lost after 3 missed keepalives; the last answer before that: readyz answered "etcd not ready"');
});

test('without noProgressMs a wait runs to its overall bound, as before', async () => {
  const t0 = Date.now();
  const r = await waitUntil({ timeoutMs: 150, intervalMs: 5 }, async () => 'same');
  assert.equal(r?.stalledMs, undefined);
  assert.ok(Date.now() - t0 >= 140);
});
