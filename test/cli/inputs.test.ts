import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ClusterHost } from '../../src/spec/cluster.js';
import type { Host } from '../../src/transport/host.js';
import { simulatedFleet } from '../support/fleet.js';
import { offlineCluster } from '../support/offline-example.js';
import { runCli, tempDir } from './helpers.js';

/**
 * Bad input of every kind exits 2 with a message naming the file (or flag)
 * and what is wrong, and no host is contacted.
 */

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');
const seedText = readFileSync(SEED, 'utf8');

/** A connect hook that fails the test's expectations if any host is contacted. */
function noHosts(): { contacted: string[]; connect: (h: ClusterHost) => Promise<Host> } {
  const contacted: string[] = [];
  return { contacted, connect: async (h) => (contacted.push(h.name), Promise.reject(new Error(`${h.name} was contacted`))) };
}

test('a YAML bomb and an oversized file exit 2 naming the file; no host is contacted', async (t) => {
  const dir = tempDir(t);
  const levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (const [i, n] of ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].entries()) levels.push(`${n}: &${n} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`);
  writeFileSync(join(dir, 'bomb.yaml'), seedText + levels.join('\n') + '\n');
  writeFileSync(join(dir, 'huge.yaml'), seedText + `# ${'x'.repeat(2 * 1024 * 1024)}\n`);
  for (const f of ['bomb.yaml', 'huge.yaml']) {
    const hosts = noHosts();
    for (const argv of [['validate', f], ['plan', '-f', f]]) {
      const r = await runCli(argv, { cwd: dir, hooks: { open: { connect: hosts.connect } } });
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(f.replace('.', '\\.')));
      assert.match(r.stderr, f === 'bomb.yaml' ? /alias/i : /bytes, more than a cluster file can be/);
    }
    assert.deepEqual(hosts.contacted, []);
  }
});

test('a damaged state file exits 2 naming the file and what is wrong in it', async (t) => {
  const dir = tempDir(t);
  const { file } = offlineCluster(SEED, dir);
  const state = join(dir, 'cluster.state.yaml');
  for (const [text, what] of [
    ['\u0000\u0001garbage: [\n', /not YAML/],
    ['- a\n- b\n', /not a mapping/],
    ['version: 1\ncluster: seed\nsecrets: {k3sToken: [1, 2]}\n', /secrets\.k3sToken is not a non-empty string/],
    ['version: 7\ncluster: seed\n', /version 7/],
  ] as const) {
    writeFileSync(state, text, { mode: 0o600 });
    const hosts = noHosts();
    const r = await runCli(['plan', '-f', file], { cwd: dir, hooks: { open: { connect: hosts.connect } } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /cluster\.state\.yaml/);
    assert.match(r.stderr, what);
    assert.match(r.stderr, /restore it from your backup/);
    assert.deepEqual(hosts.contacted, []);
  }
});

test('--accept-new-host-key naming no host of the file is an error', async (t) => {
  const dir = tempDir(t);
  const { file } = offlineCluster(SEED, dir);
  const hosts = noHosts();
  const r = await runCli(['plan', '-f', file, '--accept-new-host-key', 'sever1'], { cwd: dir, hooks: { open: { connect: hosts.connect } } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--accept-new-host-key sever1: no host of that name.*server1/);
  assert.deepEqual(hosts.contacted, []);
});

test('init never writes a file that fails validate, and never throws', async (t) => {
  const dir = tempDir(t);
  for (const [flags, what] of [
    [['--servers', ''], /--servers names no address/],
    [['--servers', ' , '], /--servers names no address/],
    [['--name', 'Bad_Name'], /--name: "Bad_Name" is not a DNS label/],
    [['--lb', '999.1.1.1'], /--lb 999\.1\.1\.1: .*not an IPv4 address/],
    [['--pool', 'nonsense'], /--pool: .*not an address range/],
    [['--servers', '10.0.0.1,10.0.0.1'], /--servers \(10\.0\.0\.1\): address 10\.0\.0\.1 is already used/],
    [['--agents', '192.168.1.10'], /--agents \(192\.168\.1\.10\): address 192\.168\.1\.10 is already used/],
  ] as const) {
    const r = await runCli(['init', '-o', 'c.yaml', ...flags], { cwd: dir });
    assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, what);
    assert.doesNotMatch(r.stderr, /TypeError|at .*\.ts:\d+/);
    assert.equal(existsSync(join(dir, 'c.yaml')), false, `init ${flags.join(' ')} wrote a file`);
  }
  // No MetalLB is a valid answer.
  const ok = await runCli(['init', '-o', 'c.yaml', '--pool', ''], { cwd: dir });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((await runCli(['validate', 'c.yaml'], { cwd: dir })).code, 0);
});

test('the cluster file may be given as the positional argument', async (t) => {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(SEED, dir, 'home.yaml');
  const v = await runCli(['validate', 'home.yaml'], { cwd: dir });
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /home\.yaml: valid/);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const p = await runCli(['plan', 'home.yaml', '--json'], { cwd: dir, hooks: { open: { connect: fleet.connect } } });
  assert.equal(p.code, 0, p.stderr);
  assert.equal((JSON.parse(p.stdout) as { empty: boolean }).empty, false);
  const two = await runCli(['validate', 'home.yaml', 'other.yaml'], { cwd: dir });
  assert.equal(two.code, 2);
  assert.match(two.stderr, /one cluster file at a time/);
  const both = await runCli(['validate', '-f', file, 'other.yaml'], { cwd: dir });
  assert.equal(both.code, 2);
  assert.match(both.stderr, /two cluster files/);
});

test('apply asks when standard input is a terminal even if its output is piped', async (t) => {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(SEED, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const r = await runCli(['apply', '--no-verify', '-f', file], { cwd: dir, stdinTTY: true, answers: ['n'], hooks: { open: { connect: fleet.connect } } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Nothing changed/);
  for (const h of fleet.hosts.values()) assert.deepEqual(h.writes, [], `${h.name} was changed after "n"`);
});

test('a mistyped secret reference or an unknown YAML tag is an error naming the reference syntax, not a literal password', async (t) => {
  const dir = tempDir(t);
  for (const [value, what] of [
    ['${env:DB-PASS}', /"\$\{env:DB-PASS\}" looks like a secret reference but is not one/],
    ['${ENV:X}', /"\$\{ENV:X\}" looks like a secret reference/],
    ['$env:X', /looks like a secret reference/],
    ['!secret db-pass', /Unresolved tag: !secret.*\n.*fix: k8s-ha knows no YAML tags: write a secret as "generate", "\$\{env:NAME\}"/],
  ] as const) {
    writeFileSync(join(dir, 'c.yaml'), seedText.replace('password: generate', `password: ${value}`));
    const r = await runCli(['validate', 'c.yaml'], { cwd: dir, env: { X: 'x', 'DB-PASS': 'y' } });
    assert.equal(r.code, 2, `${value}: ${r.stdout}`);
    assert.match(r.stderr, what);
    if (!value.startsWith('!')) assert.match(r.stderr, /fix: write \$\{env:NAME\}/);
  }
  // The YAML library's warnings are diagnostics too.
  writeFileSync(join(dir, 'c.yaml'), `%YAML 1.3\n---\n${seedText}`);
  const w = await runCli(['validate', 'c.yaml'], { cwd: dir });
  assert.match(w.stdout + w.stderr, /c\.yaml:1:\d+: warning : YAML: Unsupported YAML version 1\.3/);
});

test('reset, given its cluster file as the argument, asks when standard input is a terminal even if its output is piped', async (t) => {
  const dir = tempDir(t);
  const { text } = offlineCluster(SEED, dir, 'home.yaml');
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const r = await runCli(['reset', 'home.yaml'], { cwd: dir, stdinTTY: true, answers: ['n'], hooks: { open: { connect: fleet.connect } } });
  assert.doesNotMatch(r.stderr, /off a terminal it asks nothing/);
  assert.equal(r.code, 0, r.stderr);
  for (const h of fleet.hosts.values()) assert.deepEqual(h.writes, [], `${h.name} was changed after "n"`);
});
