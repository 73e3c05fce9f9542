import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { StatusHooks } from '../../src/cli/commands/status.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { runCli, tempDir } from './helpers.js';

const seed = join(import.meta.dirname, '../../examples/seed.yaml');

/** The seed's hosts answering status's commands; `notReady` nodes report NotReady. */
function hooks(o: { notReady?: string[]; rounds?: number } = {}): StatusHooks {
  const hosts = new Map<string, MemoryHost>();
  ['infra', 'server1', 'server2', 'agent1', 'agent2', 'agent3'].forEach((n, i) => {
    const h = new MemoryHost({ name: n, address: `192.168.0.${156 + i}`, services: { nginx: { active: true }, mariadb: { active: true } } });
    h.handle(/^true$/, () => ok());
    h.handle(/\/ping/, () => ok('192.168.0.157\tup\tpong\n192.168.0.158\tup\tpong\n'));
    h.handle(/^mariadb --batch/, (_c, stdin) => ok(stdin.includes('VERSION()') ? 'version\t10.11.6-MariaDB\nsize\t1048576\nkine\t1\n' : '42\n'));
    h.handle(/get nodes/, () =>
      ok(JSON.stringify({ items: ['server1', 'server2', 'agent1', 'agent2', 'agent3'].map((name) => ({ metadata: { name }, status: { conditions: [{ type: 'Ready', status: o.notReady?.includes(name) ? 'False' : 'True', reason: 'KubeletNotReady' }], nodeInfo: { kubeletVersion: 'v1.31.4+k3s1' } } })) })),
    );
    h.handle(/get services/, () => ok(JSON.stringify({ items: [] })));
    hosts.set(n, h);
  });
  return { open: { connect: async (h) => hosts.get(h.name)! }, status: { now: () => new Date(0), sleep: async () => {}, ...(o.rounds ? { rounds: o.rounds } : {}) } };
}

test('status on a healthy cluster prints the one screen and exits 0', async (t) => {
  const dir = tempDir(t);
  copyFileSync(seed, join(dir, 'cluster.yaml'));
  const r = await runCli(['status'], { cwd: dir, hooks: hooks() });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^Cluster seed \(API https:\/\/192\.168\.0\.156:6443\) at 1970-01-01T00:00:00\.000Z/);
  assert.match(r.stdout, /infra: nginx, nginx running; upstreams probed from the LB host/);
  assert.match(r.stdout, /infra: answering, MariaDB 10\.11\.6-MariaDB, 1\.0 MiB, 42 kine rows/);
  assert.match(r.stdout, /pool default: 0\/6 used/);
  assert.match(r.stdout, /Healthy: /);
});

test('status exits 1 when degraded and names what; --json carries the same list', async (t) => {
  const dir = tempDir(t);
  copyFileSync(seed, join(dir, 'cluster.yaml'));
  const r = await runCli(['status'], { cwd: dir, hooks: hooks({ notReady: ['agent2'] }) });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /DEGRADED \(1\):\n {2}- node agent2 is not Ready \(KubeletNotReady\)/);
  const j = await runCli(['status', '--json'], { cwd: dir, hooks: hooks({ notReady: ['agent2'] }) });
  assert.equal(j.code, 1);
  const doc = JSON.parse(j.stdout) as { healthy: boolean; degraded: string[]; hosts: unknown[] };
  assert.equal(doc.healthy, false);
  assert.deepEqual(doc.degraded, ['node agent2 is not Ready (KubeletNotReady)']);
  assert.equal(doc.hosts.length, 6);
});

test('status --watch refreshes: redrawn in place on a terminal, appended otherwise', async (t) => {
  const dir = tempDir(t);
  copyFileSync(seed, join(dir, 'cluster.yaml'));
  const tty = await runCli(['status', '--watch', '2'], { cwd: dir, tty: true, hooks: hooks({ rounds: 2 }) });
  assert.equal(tty.code, 0);
  assert.equal(tty.stdout.split('\x1b[H\x1b[2J').length - 1, 2);
  assert.match(tty.stdout, /Refreshing every 2 s; Ctrl-C to stop\./);
  const plain = await runCli(['status', '-w', '2'], { cwd: dir, hooks: hooks({ rounds: 3 }) });
  assert.equal(plain.stdout.match(/^Cluster seed/gm)?.length, 3);
  assert.ok(!plain.stdout.includes('\x1b['));
});

test('status --watch 0 is a usage error with the accepted range', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['status', '--watch', '0'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--watch must be a whole number from 1 to 3600/);
});
