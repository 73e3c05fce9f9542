import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { RenderInputError } from '../../src/render/common.js';
import { lbAliveScriptTimeoutS, renderLbAliveScript, type LbAliveInput } from '../../src/render/lb-alive.js';

const base: LbAliveInput = {
  listenPort: 6443,
  path: '/ping',
  servers: [{ address: '10.0.0.12', port: 6443 }, { address: '10.0.0.11', port: 6443 }],
  timeoutMs: 500,
};

test('the track script asks the local listener first, then every server at once, each bounded', () => {
  const s = renderLbAliveScript(base);
  assert.match(s, /^#!\/bin\/sh\n/);
  assert.match(s, /^T=0\.5$/m);
  assert.match(s, /--max-time "\$T"/);
  assert.match(s, /^for i in 1 2 3; do answered 'https:\/\/127\.0\.0\.1:6443\/ping' & pids="\$pids \$!"; done$/m);
  // servers in a stable order, in the background
  assert.ok(s.indexOf("'https://10.0.0.11:6443/ping' &") < s.indexOf("'https://10.0.0.12:6443/ping' &"));
  assert.equal(renderLbAliveScript(base), renderLbAliveScript({ ...base, servers: [...base.servers].reverse() }));
  assert.equal(lbAliveScriptTimeoutS(base), 2);
});

test('the track script refuses what it cannot carry in a URL', () => {
  for (const [field, patch] of [
    ['path', { path: '/ping?x=1' }],
    ['path', { path: "/a'b" }],
    ['listenPort', { listenPort: 0 }],
    ['servers', { servers: [] }],
    ['servers[0].address', { servers: [{ address: '10.0.0.1;id', port: 6443 }] }],
    ['timeoutMs', { timeoutMs: 0 }],
  ] as const) {
    assert.throws(() => renderLbAliveScript({ ...base, ...patch } as LbAliveInput), (e: unknown) => e instanceof RenderInputError && e.field === field, field);
  }
});

/**
 * Runs the rendered script with a `curl` on PATH that answers the URLs in
 * `up` (and fails the others), as keepalived would run it: its exit code.
 */
function runWith(t: TestContext, up: string[]): number {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-alive-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'alive');
  writeFileSync(script, renderLbAliveScript(base), { mode: 0o755 });
  // The fake curl: its last argument is the URL.
  writeFileSync(join(dir, 'curl'), `#!/bin/sh\nfor a; do url=$a; done\ncase " ${up.join(' ')} " in *" $url "*) exit 0;; esac\nexit 7\n`);
  chmodSync(join(dir, 'curl'), 0o755);
  const r = spawnSync('/bin/sh', [script], { env: { PATH: `${dir}:/usr/bin:/bin` }, timeout: 5_000 });
  assert.equal(r.error, undefined);
  return r.status ?? -1;
}

test('the track script passes while the local listener answers', (t) => {
  assert.equal(runWith(t, ['https://127.0.0.1:6443/ping', 'https://10.0.0.11:6443/ping']), 0);
});

test('the track script fails when the servers answer directly but not through this host', (t) => {
  assert.equal(runWith(t, ['https://10.0.0.12:6443/ping']), 1);
});

test('the track script passes when one of its three requests through the listener fails (a frozen server behind it)', (t) => {
  assert.equal(runWithLocal(t, [false, true, false], ['https://10.0.0.11:6443/ping']), 0);
  assert.equal(runWithLocal(t, [false, false, false], ['https://10.0.0.11:6443/ping']), 1);
});

test('the track script keeps the address when no server answers at all (the peer could do no better)', (t) => {
  assert.equal(runWith(t, []), 0);
});

/** As runWith, with the local listener answering only the requests marked true (in order). */
function runWithLocal(t: TestContext, local: boolean[], up: string[]): number {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-alive-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'alive');
  writeFileSync(script, renderLbAliveScript(base), { mode: 0o755 });
  writeFileSync(join(dir, 'answers'), local.map((a) => (a ? 'y' : 'n')).join('\n') + '\n');
  // The fake curl takes the next local answer under a lock (the three run at once).
  writeFileSync(
    join(dir, 'curl'),
    `#!/bin/sh\nfor a; do url=$a; done\ncase "$url" in https://127.0.0.1:*) exec 9>${dir}/lock; flock 9; a=$(head -n1 ${dir}/answers); sed -i 1d ${dir}/answers; [ "$a" = y ] && exit 0; exit 28;; esac\ncase " ${up.join(' ')} " in *" $url "*) exit 0;; esac\nexit 7\n`,
  );
  chmodSync(join(dir, 'curl'), 0o755);
  const r = spawnSync('/bin/sh', [script], { env: { PATH: `${dir}:/usr/bin:/bin` }, timeout: 5_000 });
  assert.equal(r.error, undefined);
  return r.status ?? -1;
}

/**
 * The script with `closedGraceS` and a local listener that takes every
 * connection and closes it (curl 35: no server up in it yet), a server
 * answering directly, run `runs` times with `sinceAgeS` as the age of a
 * streak already recorded (null: none). Returns each run's exit code.
 */
function runClosed(t: TestContext, o: { graceS: number; localRc: number; sinceAgeS: number | null; runs: number }): number[] {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-alive-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'alive');
  writeFileSync(script, renderLbAliveScript({ ...base, closedGraceS: o.graceS }), { mode: 0o755 });
  writeFileSync(join(dir, 'curl'), `#!/bin/sh\nfor a; do url=$a; done\ncase "$url" in https://127.0.0.1:*) exit ${o.localRc};; https://10.0.0.11:*) exit 0;; esac\nexit 7\n`);
  chmodSync(join(dir, 'curl'), 0o755);
  const since = join(dir, 'run', 'closed-since');
  if (o.sinceAgeS !== null) {
    mkdirSync(join(dir, 'run'));
    writeFileSync(since, `${Math.floor(Date.now() / 1000) - o.sinceAgeS}\n`);
  }
  const codes: number[] = [];
  for (let i = 0; i < o.runs; i++) {
    const r = spawnSync('/bin/sh', [script], { env: { PATH: `${dir}:/usr/bin:/bin`, K8S_HA_LB_ALIVE_SINCE: since }, timeout: 5_000 });
    assert.equal(r.error, undefined);
    codes.push(r.status ?? -1);
  }
  return codes;
}

test('a listener that closes connections while a server answers directly (a server that just started, before the rise) is given the grace, then fails', (t) => {
  // Both load balancers see this at the same moment when the first server comes up: failing at once took the VIP off both (lab, 19:20).
  assert.deepEqual(runClosed(t, { graceS: 2, localRc: 35, sinceAgeS: null, runs: 2 }), [0, 0]);
  assert.deepEqual(runClosed(t, { graceS: 2, localRc: 35, sinceAgeS: 1, runs: 1 }), [0]);
  assert.deepEqual(runClosed(t, { graceS: 2, localRc: 35, sinceAgeS: 2, runs: 1 }), [1], 'the grace is over: a listener that never puts the server in service fails');
  assert.deepEqual(runClosed(t, { graceS: 2, localRc: 56, sinceAgeS: 5, runs: 1 }), [1]);
});

test('a refused (stopped, killed) or hung listener fails at once, grace or not', (t) => {
  assert.deepEqual(runClosed(t, { graceS: 2, localRc: 7, sinceAgeS: null, runs: 1 }), [1]);
  assert.deepEqual(runClosed(t, { graceS: 2, localRc: 28, sinceAgeS: null, runs: 1 }), [1]);
  assert.deepEqual(runClosed(t, { graceS: 0, localRc: 35, sinceAgeS: null, runs: 1 }), [1], 'no grace asked: fail at once');
});
