// Before a drain, apply waits until kube-controller-manager and kube-scheduler
// each have a leader renewing its Lease (src/phases/k3s-leaders.ts). The Lease
// objects below have the shape `k3s kubectl get leases -n kube-system -o json`
// prints (coordination.k8s.io/v1; holderIdentity is `hostname_uuid`).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freshWithinMs, leadership, leasesToWaitFor, parseLeaseProbe, parseLeases, type LeaseView } from '../../src/phases/k3s-leaders.js';

const NOW = Date.parse('2026-12-01T18:05:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString().replace('Z', '123Z'); // MicroTime: µs digits
const lease = (name: string, holder: string, renewMs: number, leaseDurationSeconds = 15) => ({
  apiVersion: 'coordination.k8s.io/v1',
  kind: 'Lease',
  metadata: { name, namespace: 'kube-system', resourceVersion: '4711' },
  spec: { acquireTime: iso(NOW - 600_000), holderIdentity: holder, leaseDurationSeconds, leaseTransitions: 2, renewTime: iso(renewMs) },
});
const list = (...items: unknown[]) => JSON.stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items });
const KCM = 'server1_3c0b6f1e-7d1a-4c55-9f0e-2b8d1c7a9e41';
const view = (renewMs: number | null, holder: string | null = KCM, leaseDurationS: number | null = 15): LeaseView => ({ name: 'kube-controller-manager', holder, renewMs, leaseDurationS });

test('parseLeases reads holder, renewTime (µs precision) and the lease duration; an empty holder is none', () => {
  const got = parseLeases(list(lease('kube-controller-manager', KCM, NOW - 400), { metadata: { name: 'kube-scheduler' }, spec: { holderIdentity: '', leaseDurationSeconds: 1, renewTime: iso(NOW - 2000) } }));
  assert.deepEqual(got.get('kube-controller-manager'), { name: 'kube-controller-manager', holder: KCM, renewMs: NOW - 400, leaseDurationS: 15 });
  assert.deepEqual(got.get('kube-scheduler'), { name: 'kube-scheduler', holder: null, renewMs: NOW - 2000, leaseDurationS: 1 });
});

test('fresh: a holder that renewed within a third of its lease leads, and the step says who and how long ago', () => {
  assert.equal(freshWithinMs({ leaseDurationS: 15 }), 5000);
  assert.deepEqual(leadership('kube-controller-manager', view(NOW - 400), NOW, 'server1'), { leading: true, holder: KCM, text: `kube-controller-manager held by ${KCM}, renewed 0.4 s ago` });
  assert.equal(leadership('kube-controller-manager', view(NOW - 5000), NOW, 'server1').leading, true);
});

test('stale: a holder that stopped renewing (its server restarted) does not lead, until another takes the Lease', () => {
  const stale = leadership('kube-controller-manager', view(NOW - 9_300), NOW, 'server1');
  assert.deepEqual(stale, { leading: false, text: `kube-controller-manager: Lease kube-system/kube-controller-manager held by ${KCM}, last renewed 9.3 s ago (lease 15 s): its holder stopped renewing (its server restarted?); another server's takes it once it expires` });
  // The same stale record read again: still not leading (nothing renewed it).
  assert.equal(leadership('kube-controller-manager', view(NOW - 9_300), NOW + 2000, 'server1', view(NOW - 9_300)).leading, false);
  // Taken over by server2's instance: a new holder renewing now.
  const next = leadership('kube-controller-manager', view(NOW + 1_900, 'server2_9a1d'), NOW + 2000, 'server1', view(NOW - 9_300));
  assert.deepEqual(next, { leading: true, holder: 'server2_9a1d', text: 'kube-controller-manager held by server2_9a1d, renewed 0.1 s ago' });
});

test('missing Lease, no holder (the scheduler lets it go on exit), no renewTime: not leading, each said as such', () => {
  assert.deepEqual(leadership('kube-scheduler', undefined, NOW, 'server1'), { leading: false, text: 'kube-scheduler: no Lease kube-system/kube-scheduler yet (none of its instances has been elected)' });
  assert.match(leadership('kube-scheduler', { ...view(NOW - 100, null, 1), name: 'kube-scheduler' }, NOW, 'server1').text, /has no holder \(its leader let it go on exit/);
  assert.equal(leadership('kube-controller-manager', view(null), NOW, 'server1').leading, false);
});

test('clock skew: a renewTime behind or far ahead of the reader\'s clock counts once it is seen to move between reads', () => {
  // The holder's clock 30 s behind server1's: by the clock alone it looks stale...
  const behind = leadership('kube-controller-manager', view(NOW - 30_000), NOW, 'server1');
  assert.equal(behind.leading, false);
  // ...but it was renewed since the last read (2 s later, renewTime 2 s later): a live leader.
  const renewed = leadership('kube-controller-manager', view(NOW - 28_000), NOW + 2000, 'server1', view(NOW - 30_000));
  assert.deepEqual(renewed, { leading: true, holder: KCM, text: `kube-controller-manager held by ${KCM}, renewed since the last read (its renewTime is 30.0 s behind server1's clock: the servers' clocks differ, check their time sync)` });
  // 20 s ahead: not trusted on one read, trusted once it moves.
  assert.match(leadership('kube-controller-manager', view(NOW + 20_000), NOW, 'server1').text, /renewTime 20\.0 s ahead of server1's clock; waiting to see it renewed/);
  assert.match((leadership('kube-controller-manager', view(NOW + 22_000), NOW + 2000, 'server1', view(NOW + 20_000)) as { text: string }).text, /renewed since the last read \(its renewTime is 20\.0 s ahead of server1's clock/);
  // Within a second ahead: clock granularity, counted as now.
  assert.deepEqual(leadership('kube-controller-manager', view(NOW + 600), NOW, 'server1'), { leading: true, holder: KCM, text: `kube-controller-manager held by ${KCM}, renewed 0.0 s ago` });
});

test('a Lease whose leader election the cluster file turns off is not waited for', () => {
  assert.deepEqual(leasesToWaitFor({}), ['kube-controller-manager', 'kube-scheduler']);
  assert.deepEqual(leasesToWaitFor({ 'kube-controller-manager-arg': ['leader-elect=false', 'v=2'] }), ['kube-scheduler']);
  assert.deepEqual(leasesToWaitFor({ 'kube-scheduler-arg': '--leader-elect=false', 'kube-controller-manager-arg': ['leader-elect=true'] }), ['kube-controller-manager']);
});

test('parseLeaseProbe: the clock and the Leases, or kubectl\'s error', () => {
  const r = parseLeaseProbe(`rc=0\nnow=${NOW / 1000 + 0.25}\n${list(lease('kube-scheduler', 'server2_x', NOW))}\n`);
  assert.ok(r.ok);
  assert.equal(r.nowMs, NOW + 250);
  assert.equal(r.leases.get('kube-scheduler')?.holder, 'server2_x');
  assert.deepEqual(parseLeaseProbe(`rc=1\nnow=${NOW / 1000}\nThe connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?\n`), {
    ok: false,
    error: 'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?',
  });
  assert.equal(parseLeaseProbe('').ok, false);
});
