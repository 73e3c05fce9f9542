import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NginxLbInput, RenderInputError, renderNginxConf } from '../../src/render/index.js';
import { assertFieldErrors, assertGolden, run, shuffled, which, withTempFile } from '../fixtures/render/helpers.js';
import { skipOrFail } from '../../lab/testing.js';

const base: NginxLbInput = {
  listenPort: 6443,
  servers: [
    { name: 'server-b', address: '10.0.0.6', port: 6443 },
    { name: 'server-a', address: '10.0.0.5', port: 6443 },
    { name: 'server-c', address: 'fd00::7', port: 6443 },
  ],
  connectTimeoutMs: 3000,
  idleTimeoutMs: 3_600_000,
  maxFails: 1,
  failTimeoutMs: 10_000,
};

test('nginx.conf matches the expected file', () => {
  assertGolden('nginx.conf', renderNginxConf(base));
});

test('nginx.conf for the official image runs workers as nginx and loads no module snippets', () => {
  const out = renderNginxConf({ ...base, flavor: 'official-image', listenAddress: '10.0.0.100' });
  assertGolden('nginx-official-image.conf', out);
  assert.match(out, /^user nginx;$/m);
  assert.doesNotMatch(out, /modules-enabled/);
  assert.match(out, /^\s+listen 10\.0\.0\.100:6443;$/m);
});

test('nginx.conf with the active checker takes the servers from the checker\'s file', () => {
  const out = renderNginxConf({ ...base, upstreamInclude: '/etc/nginx/k8s-ha-upstream.conf' });
  assertGolden('nginx-lbcheck.conf', out);
  assert.match(out, /^\s+include \/etc\/nginx\/k8s-ha-upstream\.conf;$/m);
  assert.doesNotMatch(out, /^\s+server \S+:6443 /m);
  assert.throws(() => renderNginxConf({ ...base, upstreamInclude: 'x.conf; include /etc/passwd' }), (e: unknown) => e instanceof RenderInputError && e.field === 'upstreamInclude');
});

test('nginx.conf lists servers by name whatever the input order', () => {
  const expected = renderNginxConf(base);
  assert.equal(renderNginxConf({ ...base, servers: [...base.servers].reverse() }), expected);
  assert.equal(renderNginxConf({ ...base, servers: shuffled(base.servers, 3) }), expected);
  const lines = expected.split('\n').filter((l) => /^\s+server \S+:\d+ /.test(l));
  assert.deepEqual(lines.map((l) => l.split('# ')[1]), ['server-a', 'server-b', 'server-c']);
});

test('nginx.conf brackets IPv6 addresses and raises the timeouts that matter', () => {
  const out = renderNginxConf({ ...base, listenAddress: '::' });
  assert.match(out, /server \[fd00::7\]:6443 max_fails=1 fail_timeout=10s;/);
  assert.match(out, /listen \[::\]:6443;/);
  assert.match(out, /proxy_connect_timeout 3s;/);
  assert.match(out, /proxy_timeout 1h;/);
  assert.match(out, /proxy_next_upstream_tries 3;/);
  assert.match(out, /proxy_next_upstream_timeout 9s;/);
});

test('nginx.conf says that passive checks are off with a single server', () => {
  const out = renderNginxConf({ ...base, servers: [base.servers[0]!] });
  assert.match(out, /With a single server nginx ignores max_fails/);
});

test('nginx.conf refuses values that would inject or break directives', () => {
  const bad: [string, Partial<NginxLbInput>][] = [
    ['servers[0].address', { servers: [{ name: 'a', address: '10.0.0.5; include /etc/passwd', port: 6443 }] }],
    ['servers[0].address', { servers: [{ name: 'a', address: '10.0.0.5\nserver 6.6.6.6:6443', port: 6443 }] }],
    ['servers[0].name', { servers: [{ name: 'a b', address: '10.0.0.5', port: 6443 }] }],
    ['servers[0].name', { servers: [{ name: 'a\n}', address: '10.0.0.5', port: 6443 }] }],
    ['servers[0].port', { servers: [{ name: 'a', address: '10.0.0.5', port: 70000 }] }],
    ['servers', { servers: [] }],
    ['servers[].name', { servers: [base.servers[0]!, { ...base.servers[1]!, name: 'server-b' }] }],
    ['servers[].address:port', { servers: [base.servers[1]!, { ...base.servers[1]!, name: 'other' }] }],
    ['listenAddress', { listenAddress: '0.0.0.0;' }],
    ['listenPort', { listenPort: 0 }],
    ['connectTimeoutMs', { connectTimeoutMs: 0 }],
    ['idleTimeoutMs', { idleTimeoutMs: 1.5 }],
    ['maxFails', { maxFails: -1 }],
  ];
  assertFieldErrors(renderNginxConf, base, bad);
});

test('nginx -t accepts the rendered nginx.conf', (t) => {
  const nginx = which('nginx');
  if (nginx === undefined) return t.skip(skipOrFail('nginx not installed') || undefined);
  for (const input of [base, { ...base, listenAddress: '127.0.0.1', servers: [base.servers[0]!] }]) {
    withTempFile('nginx.conf', renderNginxConf(input), (path) => {
      // No -p: Debian's module snippets load modules/*.so relative to the
      // compiled-in prefix.
      const r = run(nginx, ['-t', '-c', path]);
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /\[(warn|emerg|alert)\]/, r.stderr);
    });
  }
});

test('nginx -t rejects stream {} without the modules-enabled include, so the checker is meaningful', (t) => {
  const nginx = which('nginx');
  if (nginx === undefined) return t.skip(skipOrFail('nginx not installed') || undefined);
  const conf = renderNginxConf(base).replace('include /etc/nginx/modules-enabled/*.conf;', '');
  withTempFile('nginx.conf', conf, (path) => {
    const r = run(nginx, ['-t', '-c', path]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /unknown directive "stream"/);
  });
});
