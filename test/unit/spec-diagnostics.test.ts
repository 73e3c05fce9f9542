import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { formatDiagnostics, formatPath, parseCluster, parsePath, sortDiagnostics, type Diagnostic } from '../../src/spec/index.js';

const SEED_TEXT = readFileSync('examples/seed.yaml', 'utf8');

/** 1-based line and column of the first occurrence of `needle` in the seed, after `after`. */
function positionOf(text: string, needle: string, after = ''): { line: number; column: number } {
  const start = text.indexOf(after);
  const offset = text.indexOf(needle, start);
  assert.ok(offset >= 0, `${needle} in text`);
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before[before.length - 1]!.length + 1 };
}

/** The diagnostic on `path` that parsing `text` gives is located where `at` first stands. */
function assertLocatedAt(text: string, path: string, at: string): void {
  const d = parseCluster(text, 'seed.yaml', {}).diagnostics.find((x) => x.path === path);
  assert.ok(d);
  assert.deepEqual({ line: d.line, column: d.column }, positionOf(text, at));
}

test('a bad value is located at the value in the YAML source', () => {
  const text = SEED_TEXT.replace('address: 192.168.0.158', 'address: 192.168.0.1x');
  const [d] = parseCluster(text, 'seed.yaml', {}).diagnostics;
  assert.ok(d);
  assert.equal(d.path, 'hosts[2].address');
  assert.deepEqual({ line: d.line, column: d.column }, positionOf(text, '192.168.0.1x'));
});

test('the formatted line reads file:line:column severity path: message — fix: hint', () => {
  const text = SEED_TEXT.replace('address: 192.168.0.158', 'address: 192.168.0.1x');
  const r = parseCluster(text, 'seed.yaml', {});
  const { line, column } = positionOf(text, '192.168.0.1x');
  assert.equal(
    formatDiagnostics(r.diagnostics, 'seed.yaml'),
    `seed.yaml:${line}:${column} error hosts[2].address: "192.168.0.1x" is not an IPv4 address or host name — fix: write a dotted IPv4 address such as 192.168.0.10, or a resolvable host name`,
  );
});

test('an unknown field is located at its key', () => {
  const text = SEED_TEXT.replace('  port: 22\n', '  prot: 22\n');
  assertLocatedAt(text, 'ssh.prot', 'prot: 22');
});

test('a missing field is located at the mapping that lacks it', () => {
  const text = SEED_TEXT.replace('    address: 192.168.0.157\n', '');
  assertLocatedAt(text, 'hosts[1].address', 'name: server1');
});

test('a cross-field problem is located at the field its path names', () => {
  const text = SEED_TEXT.replace('disable: [servicelb, traefik]', 'disable: [traefik]');
  assertLocatedAt(text, 'k3s.disable', '[traefik]');
});

test('a flag inside serverArgs is located at the flag\'s value', () => {
  const text = SEED_TEXT.replace('  token: generate\n', '  token: generate\n  serverArgs:\n    tls-sans: [a.example]\n');
  assertLocatedAt(text, 'k3s.serverArgs.tls-sans', '[a.example]');
});

test('a YAML syntax error carries the parser\'s position', () => {
  const text = 'apiVersion: k8s-ha/v1\nname: x\nname: y\n';
  const [d] = parseCluster(text, 'c.yaml', {}).diagnostics;
  assert.ok(d);
  assert.equal(d.line, 3);
  assert.equal(d.column, 1);
  assert.match(formatDiagnostics([d], 'c.yaml'), /^c\.yaml:3:1 error YAML: Map keys must be unique — fix: /);
});

test('paths format with indices and quote keys that are not plain names, and parse back', () => {
  const cases: [(string | number)[], string][] = [
    [['hosts', 2, 'address'], 'hosts[2].address'],
    [['k3s', 'serverArgs', 'tls-san'], 'k3s.serverArgs.tls-san'],
    [['hosts', 0, 'labels', 'topology.kubernetes.io/zone'], 'hosts[0].labels["topology.kubernetes.io/zone"]'],
    [['metallb', 'pools', 1, 'addresses', 0], 'metallb.pools[1].addresses[0]'],
    [[], ''],
  ];
  for (const [segments, text] of cases) {
    assert.equal(formatPath(segments), text);
    assert.deepEqual(parsePath(text), segments);
  }
});

test('errors sort before warnings, then by position', () => {
  const list: Diagnostic[] = [
    { severity: 'warning', path: 'a', message: 'w', hint: 'h', line: 1, column: 1 },
    { severity: 'error', path: 'b', message: 'e2', hint: 'h', line: 9, column: 1 },
    { severity: 'error', path: 'c', message: 'e1', hint: 'h', line: 2, column: 5 },
  ];
  assert.deepEqual(sortDiagnostics(list).map((d) => d.message), ['e1', 'e2', 'w']);
});

test('a diagnostic without a position prints the file name alone', () => {
  assert.equal(formatDiagnostics([{ severity: 'error', path: '', message: 'cannot read x', hint: 'give a path' }], 'x.yaml'), 'x.yaml error cannot read x — fix: give a path');
});
