import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HaproxyLbInput, renderHaproxyCfg } from '../../src/render/index.js';
import { assertFieldErrors, assertGolden, run, shuffled, which, withTempFile } from '../fixtures/render/helpers.js';
import { skipOrFail } from '../../lab/testing.js';

const base: HaproxyLbInput = {
  listenPort: 6443,
  servers: [
    { name: 'server-b', address: '10.0.0.6', port: 6443 },
    { name: 'server-a', address: '10.0.0.5', port: 6443 },
    { name: 'server-c', address: 'fd00::7', port: 6443 },
  ],
  connectTimeoutMs: 3000,
  idleTimeoutMs: 3_600_000,
  healthCheck: { path: '/ping', intervalMs: 500, fall: 2, rise: 2 },
};

test('haproxy.cfg matches the expected file', () => {
  assertGolden('haproxy.cfg', renderHaproxyCfg(base));
});

test('haproxy.cfg with a stats listener, a CA-verified check and a bind address matches the expected file', () => {
  assertGolden(
    'haproxy-stats-ca.cfg',
    renderHaproxyCfg({
      ...base,
      listenAddress: '10.0.0.100',
      maxConnections: 20000,
      statsListener: { address: '127.0.0.1', port: 8404 },
      healthCheck: { ...base.healthCheck, caFile: '/etc/haproxy/k3s-server-ca.crt' },
    }),
  );
});

test('haproxy.cfg checks /ping over TLS, retries elsewhere and drops sessions of a down server', () => {
  const out = renderHaproxyCfg(base);
  assert.match(out, /^\s+mode tcp$/m);
  assert.match(out, /^\s+option httpchk GET \/ping$/m);
  assert.match(out, /^\s+http-check expect status 200$/m);
  assert.match(out, /default-server check check-ssl verify none inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions/);
  assert.match(out, /^\s+retries 3$/m);
  assert.match(out, /^\s+option redispatch 1$/m);
  assert.match(out, /^\s+timeout tunnel 1h$/m);
  assert.match(out, /^\s+stats socket \/run\/haproxy\/admin.sock mode 660 level admin$/m);
  assert.match(out, /^\s+server server-c \[fd00::7\]:6443$/m);
});

test('haproxy.cfg is the same whatever the order of the servers', () => {
  const expected = renderHaproxyCfg(base);
  assert.equal(renderHaproxyCfg({ ...base, servers: [...base.servers].reverse() }), expected);
  assert.equal(renderHaproxyCfg({ ...base, servers: shuffled(base.servers, 5) }), expected);
});

test('haproxy.cfg refuses values that would inject or break a line', () => {
  const bad: [string, Partial<HaproxyLbInput>][] = [
    ['servers[0].address', { servers: [{ name: 'a', address: '10.0.0.5 backup', port: 6443 }] }],
    ['servers[0].name', { servers: [{ name: 'a b', address: '10.0.0.5', port: 6443 }] }],
    ['servers[0].name', { servers: [{ name: 'a#', address: '10.0.0.5', port: 6443 }] }],
    ['healthCheck.path', { healthCheck: { ...base.healthCheck, path: '/ping HTTP/1.1\r\nHost: x' } }],
    ['healthCheck.path', { healthCheck: { ...base.healthCheck, path: 'ping' } }],
    ['healthCheck.fall', { healthCheck: { ...base.healthCheck, fall: 0 } }],
    ['healthCheck.caFile', { healthCheck: { ...base.healthCheck, caFile: '/etc/x y.pem' } }],
    ['statsListener.port', { statsListener: { address: '127.0.0.1', port: 6443 } }],
    ['servers[].name', { servers: [base.servers[0]!, base.servers[0]!] }],
    ['servers', { servers: [] }],
  ];
  assertFieldErrors(renderHaproxyCfg, base, bad);
});

test('haproxy -c accepts the rendered haproxy.cfg without warnings', (t) => {
  const haproxy = which('haproxy');
  if (haproxy === undefined) return t.skip(skipOrFail('haproxy not installed') || undefined);
  const inputs: HaproxyLbInput[] = [base, { ...base, listenAddress: '127.0.0.1', statsListener: { address: '127.0.0.1', port: 8404 }, maxConnections: 1000 }];
  for (const input of inputs) {
    withTempFile('haproxy.cfg', renderHaproxyCfg(input), (path) => {
      const r = run(haproxy, ['-c', '-f', path]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /\[(WARNING|ALERT)\]/, r.stdout + r.stderr);
    });
  }
});

test('haproxy -c rejects a broken file, so the checker is meaningful', (t) => {
  const haproxy = which('haproxy');
  if (haproxy === undefined) return t.skip(skipOrFail('haproxy not installed') || undefined);
  withTempFile('haproxy.cfg', renderHaproxyCfg(base).replace('check-ssl verify none', 'check-ssl verify bogus'), (path) => {
    assert.notEqual(run(haproxy, ['-c', '-f', path]).status, 0);
  });
});
