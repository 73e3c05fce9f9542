import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { type LbCheckInput, normalizeUpstreamState, renderLbCheckScript, renderLbCheckUnit, renderUpstreamState } from '../../src/render/lbcheck.js';
import { renderNginxConf } from '../../src/render/nginx.js';
import { assertFieldErrors, assertGolden, run, which, withTempFile } from '../fixtures/render/helpers.js';
import { skipOrFail } from '../../lab/testing.js';

const base: LbCheckInput = {
  servers: [
    { name: 'server-b', address: '10.0.0.6', port: 6443 },
    { name: 'server-a', address: '10.0.0.5', port: 6443 },
    { name: 'server-c', address: 'fd00::7', port: 6443 },
  ],
  maxFails: 1,
  failTimeoutMs: 10_000,
  path: '/ping',
  intervalMs: 500,
  fall: 2,
  rise: 2,
};

test('the checker script, its unit and the upstream file match the expected files', () => {
  assertGolden('k8s-ha-lbcheck.sh', renderLbCheckScript(base));
  assertGolden('k8s-ha-lbcheck.service', renderLbCheckUnit());
  assertGolden('k8s-ha-upstream.conf', renderUpstreamState(base));
});

test('the checker script is valid POSIX sh', (t) => {
  const sh = which('dash') ?? which('sh');
  if (sh === undefined) return t.skip(skipOrFail('no sh') || undefined);
  withTempFile('k8s-ha-lbcheck', renderLbCheckScript(base), (path) => {
    const r = run(sh, ['-n', path]);
    assert.equal(r.status, 0, r.stderr);
  });
});

test('the upstream file marks down servers, and normalising removes exactly those marks', () => {
  const down = renderUpstreamState(base, ['server-b']);
  assert.match(down, /^server 10\.0\.0\.6:6443 max_fails=1 fail_timeout=10s down; # server-b$/m);
  assert.match(down, /^server \[fd00::7\]:6443 max_fails=1 fail_timeout=10s; # server-c$/m);
  assert.equal(normalizeUpstreamState(down), renderUpstreamState(base));
  assert.equal(normalizeUpstreamState(renderUpstreamState(base, ['server-a', 'server-c'])), renderUpstreamState(base));
});

test('nginx -t accepts nginx.conf with the upstream file included, with and without down marks', (t) => {
  const nginx = which('nginx');
  if (nginx === undefined) return t.skip(skipOrFail('nginx not installed') || undefined);
  for (const down of [[], ['server-b']]) {
    withTempFile('k8s-ha-upstream.conf', renderUpstreamState(base, down), (state, dir) => {
      const conf = join(dir, 'nginx.conf');
      writeFileSync(conf, renderNginxConf({ listenPort: 6443, servers: base.servers, connectTimeoutMs: 1000, idleTimeoutMs: 3_600_000, maxFails: 1, failTimeoutMs: 10_000, upstreamInclude: state }));
      const r = run(nginx, ['-t', '-c', conf]);
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /\[(warn|emerg|alert)\]/, r.stderr);
    });
  }
});

test('the checker refuses inputs that would break the script', () => {
  const bad: [string, Partial<LbCheckInput>][] = [
    ['path', { path: "/ping'; rm -rf /" }],
    ['path', { path: 'ping' }],
    ['intervalMs', { intervalMs: 0 }],
    ['fall', { fall: 0 }],
    ['rise', { rise: 1.5 }],
    ['servers', { servers: [] }],
    ['statePath', { statePath: '/etc/nginx/a b.conf' }],
    ['servers[0].address', { servers: [{ name: 'a', address: '10.0.0.5;reboot', port: 6443 }] }],
  ];
  assertFieldErrors(renderLbCheckScript, base, bad);
});

/**
 * Runs the real script for a fixed number of rounds with fake curl, nginx and
 * systemctl on PATH. `patterns` gives each server's answers round by round
 * (u = pong, d = no answer). Returns the upstream file at every reload, in
 * order, and the script's log.
 */
function runChecker(input: LbCheckInput, patterns: Record<string, string>, rounds: number, initial = renderUpstreamState(input), held: string[] = []): { reloads: string[]; log: string; state: string; ss: string } {
  return withTempFile('k8s-ha-lbcheck', renderLbCheckScript(input), (script, dir) => {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    const state = join(dir, 'upstream.conf');
    writeFileSync(state, initial);
    const hold = join(dir, 'lb-held');
    if (held.length) writeFileSync(hold, held.map((h) => `${h}\n`).join(''));
    for (const [addr, p] of Object.entries(patterns)) writeFileSync(join(dir, `pattern.${addr}`), p + '\n');
    const fake = (name: string, body: string) => {
      writeFileSync(join(bin, name), `#!/bin/sh\nD='${dir}'\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    };
    // Answers by host and by how often that host was asked; no network.
    fake(
      'curl',
      `for a; do url=$a; done
h=\${url#https://}; h=\${h%%:*}
n=$(cat "$D/count.$h" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$D/count.$h"
[ "$(cut -c"$n" "$D/pattern.$h")" = u ] && { printf pong; exit 0; }
exit 28`,
    );
    fake('nginx', 'exit 0');
    fake('ss', `echo "$*" >> "$D/ss"`);
    fake('systemctl', `[ "$1 $2" = "reload nginx" ] || exit 1\nn=$(ls "$D" | grep -c '^reload\\.'); cp '${state}' "$D/reload.$n"`);
    const r = run('sh', [script], undefined, { PATH: `${bin}:${process.env['PATH'] ?? ''}`, K8S_HA_LBCHECK_STATE: state, K8S_HA_LBCHECK_HOLD: hold, K8S_HA_LBCHECK_ROUNDS: String(rounds) });
    assert.equal(r.status, 0, r.stderr);
    const reloads = readdirSync(dir)
      .filter((f) => f.startsWith('reload.'))
      .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)))
      .map((f) => readFileSync(join(dir, f), 'utf8'));
    const ss = join(dir, 'ss');
    return { reloads, log: r.stdout + r.stderr, state: readFileSync(state, 'utf8'), ss: existsSync(ss) ? readFileSync(ss, 'utf8') : '' };
  });
}

const two: LbCheckInput = { ...base, servers: base.servers.slice(0, 2), intervalMs: 10 };

test('a server is marked down after `fall` failed checks and back after `rise` passed ones, with one reload each', (t) => {
  if (which('dash') === undefined && which('sh') === undefined) return t.skip(skipOrFail('no sh') || undefined);
  // server-b (10.0.0.6) fails rounds 3-5: down at round 4, up again at round 7.
  const r = runChecker(two, { '10.0.0.5': 'uuuuuuuuu', '10.0.0.6': 'uuddduuuu' }, 9);
  assert.deepEqual(r.reloads, [renderUpstreamState(two, ['server-b']), renderUpstreamState(two)], r.log);
  assert.match(r.log, /server-b is down \(2 checks failed\)/);
  assert.match(r.log, /server-b is up \(2 checks passed\)/);
  assert.equal(r.state, renderUpstreamState(two));
  // The connections held on server-b are closed when it is marked down, and
  // twice more while the reload replaces the workers that may still send it some.
  assert.equal(r.ss, '-K dst 10.0.0.6 dport = :6443\n'.repeat(3));
});

test('with no hold file the checker logs nothing about it (a round used to print "cannot open ... lb-held" to the journal)', (t) => {
  if (which('dash') === undefined && which('sh') === undefined) return t.skip(skipOrFail('no sh') || undefined);
  const r = runChecker(two, { '10.0.0.5': 'uuu', '10.0.0.6': 'uuu' }, 3);
  assert.doesNotMatch(r.log, /lb-held|cannot open|No such file/, r.log);
});

test('one failed check is not enough to take a server out', (t) => {
  if (which('dash') === undefined && which('sh') === undefined) return t.skip(skipOrFail('no sh') || undefined);
  const r = runChecker(two, { '10.0.0.5': 'uuuuuu', '10.0.0.6': 'ududud' }, 6);
  assert.deepEqual(r.reloads, [], r.log);
});

test('the checker never marks every server down, and logs that it kept them', (t) => {
  if (which('dash') === undefined && which('sh') === undefined) return t.skip(skipOrFail('no sh') || undefined);
  // Both fail from round 3; server-a passes again at rounds 7-8.
  const r = runChecker(two, { '10.0.0.5': 'uuddddduuu', '10.0.0.6': 'uudddddddd' }, 10);
  assert.deepEqual(r.reloads, [renderUpstreamState(two, ['server-b'])], r.log);
  assert.equal((r.log.match(/every server fails its check: leaving all of them in nginx/g) ?? []).length, 1, r.log);
  assert.equal(r.state, renderUpstreamState(two, ['server-b']));
  assert.equal(r.ss, '-K dst 10.0.0.6 dport = :6443\n'.repeat(3), 'no connection is closed while every server is kept');
});

test('the checker puts a stale upstream file back in step on its first round, and leaves a current one alone', (t) => {
  if (which('dash') === undefined && which('sh') === undefined) return t.skip(skipOrFail('no sh') || undefined);
  // As after a server was added: the file still lists the old set.
  const stale = renderUpstreamState({ ...two, servers: [two.servers[0]!] });
  const r = runChecker(two, { '10.0.0.5': 'uu', '10.0.0.6': 'uu' }, 2, stale);
  assert.deepEqual(r.reloads, [renderUpstreamState(two)], r.log);
  assert.deepEqual(runChecker(two, { '10.0.0.5': 'uu', '10.0.0.6': 'uu' }, 2).reloads, []);
});

test('a server k8s-ha holds out stays down whatever its checks say, also when every other server fails', (t) => {
  if (which('dash') === undefined && which('sh') === undefined) return t.skip(skipOrFail('no sh') || undefined);
  // server-a is held (being restarted for an upgrade) and passes its checks; the
  // file k8s-ha wrote (server-a down) is what the checker wants: no reload.
  const heldFile = renderUpstreamState(two, ['server-a']);
  assert.deepEqual(runChecker(two, { '10.0.0.5': 'uuuu', '10.0.0.6': 'uuuu' }, 4, heldFile, ['server-a']).reloads, []);
  // server-b then fails too: it is not taken out (the last one in service), and server-a stays out.
  const r = runChecker(two, { '10.0.0.5': 'uuuuuu', '10.0.0.6': 'uudddd' }, 6, heldFile, ['server-a']);
  assert.deepEqual(r.reloads, [], r.log);
  assert.equal(r.state, heldFile);
  // Without the hold the same file is put back in step (server-a back in) on the first round.
  assert.deepEqual(runChecker(two, { '10.0.0.5': 'uu', '10.0.0.6': 'uu' }, 2, heldFile).reloads, [renderUpstreamState(two)]);
});
