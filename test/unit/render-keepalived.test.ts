import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { test } from 'node:test';
import { KeepalivedInput, renderKeepalivedConf } from '../../src/render/index.js';
import { MASK, Secret } from '../../src/util/secret.js';
import { assertFieldErrors, assertGolden, run, which, withTempFile } from '../fixtures/render/helpers.js';
import { skipOrFail } from '../../lab/testing.js';

const base: KeepalivedInput = {
  hostName: 'lb-1',
  routerId: 51,
  interface: 'eth0',
  virtualAddress: '10.0.0.100',
  prefixLength: 24,
  priority: 150,
  peers: ['10.0.0.11'],
  selfAddress: '10.0.0.10',
  unicast: true,
  advertIntervalMs: 1000,
  authPass: new Secret('k8sHa-42'),
  checkScript: '/usr/local/sbin/k8s-ha-lb-alive',
  checkTimeoutS: 2,
};

const fast: KeepalivedInput = { ...base, advertIntervalMs: 500, authPass: undefined, unicast: false, preempt: false };

test('keepalived.conf (VRRP v2, unicast, PASS auth) matches the expected file', () => {
  assertGolden('keepalived.conf', renderKeepalivedConf(base));
});

test('keepalived.conf with a sub-second advert uses VRRP v3 and no authentication', () => {
  const out = renderKeepalivedConf(fast);
  assertGolden('keepalived-v3.conf', out);
  assert.match(out, /^\s+vrrp_version 3$/m);
  assert.match(out, /^\s+advert_int 0\.5$/m);
  assert.doesNotMatch(out, /authentication/);
  assert.doesNotMatch(out, /unicast/);
  assert.match(out, /^\s+nopreempt$/m);
  assert.match(out, /script "\/usr\/local\/sbin\/k8s-ha-lb-alive"/);
});

test('keepalived.conf starts both LBs as BACKUP and fails over on one failed check (weight 0, fall 1), bounded by a timeout', () => {
  const out = renderKeepalivedConf(base);
  assert.match(out, /vrrp_script chk_lb \{\n(?:\s+#.*\n)*\s+script "\/usr\/local\/sbin\/k8s-ha-lb-alive"\n(?:\s+#.*\n)*\s+interval 1\n\s+timeout 2\n\s+fall 1\n\s+rise 2\n/);
  assert.match(out, /^\s+state BACKUP$/m);
  assert.match(out, /^\s+weight 0$/m);
  assert.match(out, /^\s+10\.0\.0\.100\/24 dev eth0$/m);
  assert.match(out, /^\s+enable_script_security$/m);
});

test('keepalived.conf masked for a plan shows MASK instead of auth_pass', () => {
  const masked = renderKeepalivedConf(base, { maskSecrets: true });
  assert.ok(!masked.includes('k8sHa-42'));
  assert.match(masked, new RegExp(`auth_pass ${MASK.replace(/\*/g, '\\*')}$`, 'm'));
  assert.ok(renderKeepalivedConf(base).includes('auth_pass k8sHa-42'));
});

test('keepalived.conf lists unicast peers in a stable order', () => {
  const input = { ...base, peers: ['10.0.0.13', '10.0.0.11', '10.0.0.12'] };
  assert.equal(renderKeepalivedConf(input), renderKeepalivedConf({ ...input, peers: [...input.peers].reverse() }));
});

test('keepalived.conf refuses values keepalived would misread or that cannot work', () => {
  const bad: [string, Partial<KeepalivedInput>][] = [
    ['authPass', { advertIntervalMs: 500 }],
    ['authPass', { authPass: new Secret('123456789') }],
    ['authPass', { authPass: new Secret('ab#cd') }],
    ['authPass', { authPass: new Secret('a b') }],
    ['authPass', { authPass: new Secret('') }],
    ['routerId', { routerId: 0 }],
    ['routerId', { routerId: 256 }],
    ['priority', { priority: 255 }],
    ['interface', { interface: 'eth0 }' }],
    ['interface', { interface: 'a-very-long-interface-name' }],
    ['virtualAddress', { virtualAddress: '10.0.0.100/24' }],
    ['virtualAddress', { virtualAddress: 'fd00::100' }],
    ['peers', { peers: [] }],
    ['peers', { peers: ['10.0.0.10'] }],
    ['peers[0]', { peers: ['10.0.0.11\n}'] }],
    ['advertIntervalMs', { advertIntervalMs: 505, authPass: undefined }],
    ['advertIntervalMs', { advertIntervalMs: 0 }],
    ['hostName', { hostName: 'lb 1' }],
    ['checkScript', { checkScript: 'pgrep -x nginx' }],
    ['checkTimeoutS', { checkTimeoutS: 0 }],
  ];
  assertFieldErrors(renderKeepalivedConf, base, bad);
  // The error never shows the password.
  try {
    renderKeepalivedConf({ ...base, authPass: new Secret('toolongsecret') });
  } catch (e) {
    assert.ok(!String(e).includes('toolongsecret'));
  }
});

/** An interface that exists here: keepalived -t reports a missing one as an error. */
function hostInterface(): string {
  const names = Object.entries(networkInterfaces())
    .filter(([, addrs]) => (addrs ?? []).some((a) => !a.internal && a.family === 'IPv4'))
    .map(([n]) => n)
    .filter((n) => /^[A-Za-z0-9_.-]{1,15}$/.test(n))
    .sort();
  return names[0] ?? 'lo';
}

test('keepalived -t accepts the rendered keepalived.conf (v2 and v3)', (t) => {
  const keepalived = which('keepalived');
  if (keepalived === undefined) return t.skip(skipOrFail('keepalived not installed') || undefined);
  const iface = hostInterface();
  for (const input of [base, fast]) {
    // enable_script_security: keepalived -t checks that the script exists and only root can change it.
    withTempFile('keepalived.conf', renderKeepalivedConf({ ...input, interface: iface, checkScript: '/bin/true' }), (path) => {
      const r = run(keepalived, ['-t', '-f', path]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal((r.stdout + r.stderr).trim(), '', r.stdout + r.stderr);
    });
  }
});

test('keepalived -t rejects a broken file, so the checker is meaningful', (t) => {
  const keepalived = which('keepalived');
  if (keepalived === undefined) return t.skip(skipOrFail('keepalived not installed') || undefined);
  const conf = renderKeepalivedConf({ ...base, interface: hostInterface(), checkScript: '/bin/true' }).replace('virtual_router_id 51', 'virtual_router_id 300');
  withTempFile('keepalived.conf', conf, (path) => {
    const r = run(keepalived, ['-t', '-f', path]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /virtual router id|VRID/i);
  });
});
