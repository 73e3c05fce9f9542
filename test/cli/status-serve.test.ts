import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { StatusHooks } from '../../src/cli/commands/status.js';
import type { StatusServer } from '../../src/status/serve.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { runCli, tempDir } from './helpers.js';

const seed = join(import.meta.dirname, '../../examples/seed.yaml');

/** The seed's hosts answering status's commands; counts connections so a refusal can prove none was made. */
function seedHosts(): { connects: () => number; hooks: (extra?: Partial<StatusHooks>) => StatusHooks } {
  let connects = 0;
  const hosts = new Map<string, MemoryHost>();
  ['infra', 'server1', 'server2', 'agent1', 'agent2', 'agent3'].forEach((n, i) => {
    const h = new MemoryHost({ name: n, address: `192.168.0.${156 + i}`, services: { nginx: { active: true }, mariadb: { active: true } } });
    h.handle(/^true$/, () => ok());
    h.handle(/\/ping/, () => ok('192.168.0.157\tup\tpong\n192.168.0.158\tup\tpong\n'));
    h.handle(/^mariadb --batch/, (_c, stdin) => ok(stdin.includes('VERSION()') ? 'version\t10.11.6-MariaDB\nsize\t1048576\nkine\t1\n' : '42\n'));
    h.handle(/get nodes/, () => ok(JSON.stringify({ items: ['server1', 'server2', 'agent1', 'agent2', 'agent3'].map((name) => ({ metadata: { name }, status: { conditions: [{ type: 'Ready', status: 'True' }], nodeInfo: { kubeletVersion: 'v1.31.4+k3s1' } } })) })));
    h.handle(/get services/, () => ok(JSON.stringify({ items: [] })));
    hosts.set(n, h);
  });
  return { connects: () => connects, hooks: (extra = {}) => ({ open: { connect: async (h) => (connects++, hosts.get(h.name)!) }, ...extra }) };
}

test('status --serve on a non-loopback address without --allow-remote: exit 2, the risk and the flag named, no host contacted', async (t) => {
  const dir = tempDir(t);
  copyFileSync(seed, join(dir, 'cluster.yaml'));
  const f = seedHosts();
  const r = await runCli(['status', '--serve', '0.0.0.0:8440'], { cwd: dir, hooks: f.hooks() });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--serve 0\.0\.0\.0:8440 is not a loopback address; the page shows the cluster's topology .*Add --allow-remote/);
  assert.equal(f.connects(), 0);
});

test('status --serve flags: a bad address, --allow-remote or --timeout without --serve, and --serve with --json are usage errors', async (t) => {
  const dir = tempDir(t);
  copyFileSync(seed, join(dir, 'cluster.yaml'));
  const cases: [string[], RegExp][] = [
    [['--serve', 'nowhere:1'], /--serve takes ADDRESS:PORT/],
    [['--allow-remote'], /--allow-remote only goes with --serve/],
    [['--timeout', '5'], /--timeout only goes with --serve/],
    // A bare --serve (its default address) before another flag.
    [['--serve', '--json'], /--serve and --json do not go together; the page serves the same JSON at \/status\.json/],
    [['--serve', '127.0.0.1:0', '--timeout', '0'], /--timeout must be a whole number from 1 to 600/],
  ];
  for (const [args, msg] of cases) {
    const r = await runCli(['status', ...args], { cwd: dir, hooks: seedHosts().hooks() });
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, msg);
  }
});

test('status --serve serves the live page of the cluster until interrupted, then exits 0', async (t) => {
  const dir = tempDir(t);
  copyFileSync(seed, join(dir, 'cluster.yaml'));
  const ac = new AbortController();
  let server: StatusServer | undefined;
  const f = seedHosts();
  const done = runCli(['status', '--serve', '127.0.0.1:0', '--watch', '1'], {
    cwd: dir,
    hooks: f.hooks({
      signal: ac.signal,
      serve: {
        listening: (s) => (server = s),
        onRound: () => {
          if (server && server.rounds >= 1 && !ac.signal.aborted) void check(server).finally(() => ac.abort());
        },
      },
    }),
  });
  const seen: { page?: string; json?: { healthy: boolean; hosts: unknown[] } } = {};
  async function check(s: StatusServer): Promise<void> {
    seen.page = await (await fetch(s.url)).text();
    seen.json = (await (await fetch(`${s.url}status.json`)).json()) as { healthy: boolean; hosts: unknown[] };
  }
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Status page of seed: http:\/\/127\.0\.0\.1:\d+\/ \(read-only; refresh every 1 s; Ctrl-C to stop\)/);
  assert.equal(r.stderr, '');
  assert.match(seen.page ?? '', /<g class="el h-ok" id="w-lb-infra"/);
  assert.match(seen.page ?? '', /seed: healthy/);
  assert.equal(seen.json?.healthy, true);
  assert.equal(seen.json?.hosts.length, 6);
});
