// k8s-ha-lbcheck's Galera datastore part (render/nginx-datastore.ts), run as
// the real script for a fixed number of rounds with fake curl, date, ip, ss,
// nginx and systemctl on PATH: exactly one node up, a hold-down after the
// writer is lost, no fail back, the writer kept across restarts, the
// virtual IP's gate, and the writer the data nodes show followed by a load
// balancer without the address. (test/unit/nginx-writer-hold.test.ts runs
// the same script with a real nginx.)
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { RenderInputError } from '../../src/render/common.js';
import { type LbCheckInput, renderLbCheckScript, renderUpstreamState } from '../../src/render/lbcheck.js';
import { type NginxDatastoreInput, parseDatastoreState, renderDatastoreState, renderNginxTakeoverScript } from '../../src/render/nginx-datastore.js';
import { renderNginxConf } from '../../src/render/nginx.js';
import { run, which, withTempFile } from '../fixtures/render/helpers.js';
import { skipOrFail } from '../../lab/testing.js';

const ds: NginxDatastoreInput = {
  listenPort: 3306,
  // The preferred writer first (infra2 here, so the order is not the names').
  nodes: [
    { name: 'infra2', address: '10.0.0.2', port: 3307 },
    { name: 'infra1', address: '10.0.0.1', port: 3307 },
    { name: 'infra3', address: '10.0.0.3', port: 3307 },
  ],
  checkPort: 9200,
  // The fake date advances 100 ms a round: a hold-down of 3 rounds.
  holdMs: 300,
  proxyProtocol: true,
};
const base: LbCheckInput = {
  servers: [{ name: 'server1', address: '10.0.1.1', port: 6443 }],
  maxFails: 1,
  failTimeoutMs: 10_000,
  path: '/ping',
  intervalMs: 10,
  fall: 2,
  rise: 1,
  datastore: ds,
};

interface Run {
  /** The node up in the datastore file at each reload (null: none). */
  reloads: (string | null)[];
  log: string;
  writer: string | null;
  ss: string;
  /** Closes of a node that was up in the live file when they ran (must be none). */
  ssUp: string;
  state: string;
}

/**
 * `patterns`: each node's check answer round by round (u = 200, s = 200 and
 * it holds kine's sessions, d = 503). `vip`: per round, whether this host
 * holds the virtual IP (y/n). `writer`: the writer file before the start.
 */
function runChecker(input: LbCheckInput, patterns: Record<string, string>, rounds: number, o: { writer?: string; vip?: string; takeoverAt?: number; initial?: string } = {}): Run {
  return withTempFile('k8s-ha-lbcheck', renderLbCheckScript(input), (script, dir) => {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    const api = join(dir, 'upstream.conf');
    writeFileSync(api, renderUpstreamState(input));
    const dstate = join(dir, 'datastore.conf');
    writeFileSync(dstate, o.initial ?? renderDatastoreState(input.datastore!));
    const wfile = join(dir, 'lib', 'writer');
    if (o.writer !== undefined) {
      mkdirSync(join(dir, 'lib'));
      writeFileSync(wfile, `${o.writer}\n`);
    }
    const takeover = join(dir, 'takeover');
    if (o.takeoverAt !== undefined) writeFileSync(takeover, `${o.takeoverAt}\n`);
    for (const [addr, p] of Object.entries(patterns)) writeFileSync(join(dir, `pattern.${addr}`), p + '\n');
    if (o.vip !== undefined) writeFileSync(join(dir, 'vip'), o.vip + '\n');
    const fake = (name: string, body: string) => {
      writeFileSync(join(bin, name), `#!/bin/sh\nD='${dir}'\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    };
    // The API server always answers; a data node by its pattern, its body as k8s-ha-galera-check's.
    fake(
      'curl',
      `out="" prev=""
for a; do [ "$prev" = -o ] && out=$a; prev=$a; url=$a; done
case "$url" in https://*) printf pong; exit 0 ;; esac
h=\${url#http://}; h=\${h%%:*}
n=$(cat "$D/count.$h" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$D/count.$h"
c=$(cut -c"$n" "$D/pattern.$h")
case "$c" in
  u) echo "wsrep_local_state_comment=Synced kine_sessions=0 wsrep_causal_read=ON" > "$out"; printf 200 ;;
  s) echo "wsrep_local_state_comment=Synced kine_sessions=4 wsrep_causal_read=writer" > "$out"; printf 200 ;;
  *) echo "wsrep_local_state_comment=Donor/Desynced" > "$out"; printf 503 ;;
esac`,
    );
    // One call a round: 100 ms later each time, from 1000000.
    fake('date', `n=$(cat "$D/clock" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$D/clock"; echo $((1000000 + n * 100))`);
    fake('ip', `n=$(cat "$D/ipcount" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$D/ipcount"
[ "$(cut -c"$n" "$D/vip")" = y ] && echo "2: eth0    inet 10.0.0.10/32 scope global eth0"
echo "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0"`);
    fake('nginx', 'exit 0');
    // Records each close, and any close of a node up in the live file at that moment.
    fake('ss', `echo "$*" >> "$D/ss"
grep -q "^server $3:[0-9]* max_fails=0; #" "$D/datastore.conf" && echo "$*" >> "$D/ss-up"
exit 0`);
    fake('systemctl', `[ "$1 $2" = "reload nginx" ] || exit 1\nn=$(ls "$D" | grep -c '^reload\\.'); cp '${dstate}' "$D/reload.$n"`);
    const r = run('sh', [script], undefined, {
      PATH: `${bin}:${process.env['PATH'] ?? ''}`,
      K8S_HA_LBCHECK_STATE: api,
      K8S_HA_LBCHECK_HOLD: join(dir, 'lb-held'),
      K8S_HA_LBCHECK_DATASTORE: dstate,
      K8S_HA_LBCHECK_WRITER: wfile,
      K8S_HA_LBCHECK_TAKEOVER: takeover,
      K8S_HA_LBCHECK_PIDFILE: join(dir, 'no-nginx.pid'),
      K8S_HA_LBCHECK_ROUNDS: String(rounds),
    });
    assert.equal(r.status, 0, r.stderr);
    const reloads = readdirSync(dir)
      .filter((f) => f.startsWith('reload.'))
      .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)))
      .map((f) => parseDatastoreState(readFileSync(join(dir, f), 'utf8')));
    const ss = join(dir, 'ss');
    const up = join(dir, 'ss-up');
    return {
      ssUp: existsSync(up) ? readFileSync(up, 'utf8') : '',
      reloads,
      log: r.stdout + r.stderr,
      writer: existsSync(wfile) ? readFileSync(wfile, 'utf8').trim() : null,
      ss: existsSync(ss) ? readFileSync(ss, 'utf8') : '',
      state: readFileSync(dstate, 'utf8'),
    };
  });
}

const skipNoSh = (t: { skip: (r: string) => void }) => (which('dash') === undefined && which('sh') === undefined ? (t.skip(skipOrFail('no sh') || 'no sh'), true) : false);

test('the datastore file names one node up, or none, and nginx -t accepts both', (t) => {
  const all = renderDatastoreState(ds);
  assert.equal(parseDatastoreState(all), null);
  assert.equal((all.match(/ down; # /g) ?? []).length, 3);
  const one = renderDatastoreState(ds, 'infra1');
  assert.match(one, /^server 10\.0\.0\.1:3307 max_fails=0; # infra1$/m);
  assert.match(one, /^server 10\.0\.0\.2:3307 max_fails=0 down; # infra2$/m);
  assert.equal(parseDatastoreState(one), 'infra1');
  const nginx = which('nginx');
  if (nginx === undefined) return t.skip(skipOrFail('nginx not installed') || undefined);
  for (const text of [all, one]) {
    withTempFile('k8s-ha-datastore.conf', text, (state, dir) => {
      writeFileSync(join(dir, 'up.conf'), renderUpstreamState(base));
      const conf = join(dir, 'nginx.conf');
      writeFileSync(conf, renderNginxConf({ listenPort: 6443, servers: base.servers, connectTimeoutMs: 1000, idleTimeoutMs: 3_600_000, maxFails: 1, failTimeoutMs: 10_000, upstreamInclude: join(dir, 'up.conf'), datastore: { ...ds, statePath: state } }));
      const r = run(nginx, ['-t', '-c', conf]);
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /\[(warn|emerg|alert)\]/, r.stderr);
    });
  }
});

test('nginx.conf routes the datastore to its upstream with the PROXY header and no next upstream, and refuses it without the checker', () => {
  const input = { listenPort: 6443, servers: base.servers, connectTimeoutMs: 1000, idleTimeoutMs: 3_600_000, maxFails: 1, failTimeoutMs: 10_000, upstreamInclude: '/etc/nginx/k8s-ha-upstream.conf', datastore: ds };
  const conf = renderNginxConf(input);
  assert.match(conf, /upstream k3s_datastore \{[^}]*include \/etc\/nginx\/k8s-ha-datastore\.conf;/);
  const server = conf.slice(conf.indexOf('listen 3306;'));
  assert.match(server, /proxy_pass k3s_datastore;[\s\S]*proxy_protocol on;[\s\S]*proxy_next_upstream off;/);
  assert.throws(() => renderNginxConf({ ...input, upstreamInclude: undefined }), (e: unknown) => e instanceof RenderInputError && e.field === 'datastore');
  assert.throws(() => renderNginxConf({ ...input, datastore: { ...ds, listenPort: 6443 } }), (e: unknown) => e instanceof RenderInputError && e.field === 'datastore.listenPort');
  assert.throws(() => renderLbCheckScript({ ...base, datastore: { ...ds, nodes: [{ name: 'a*', address: '10.0.0.1', port: 3307 }, ds.nodes[1]!] } }), (e: unknown) => e instanceof RenderInputError && e.field === 'datastore.nodes[0].name');
});

test('the checker script with a datastore is valid POSIX sh, and keepalived\'s takeover script writes the time', (t) => {
  if (skipNoSh(t)) return;
  withTempFile('k8s-ha-lbcheck', renderLbCheckScript(base), (path) => assert.equal(run(which('dash') ?? 'sh', ['-n', path]).status, 0));
  withTempFile('hold', '', (_p, dir) => {
    const at = join(dir, 'run', 'takeover');
    const script = join(dir, 'notify');
    writeFileSync(script, renderNginxTakeoverScript(at));
    const before = Date.now();
    assert.equal(run('sh', [script]).status, 0);
    const ms = Number(readFileSync(at, 'utf8').trim());
    assert.ok(ms >= before - 1 && ms <= Date.now() + 1, `epoch ms: ${ms}`);
  });
});

test('at a cold start the preferred fit node becomes the writer, and only it is up', (t) => {
  if (skipNoSh(t)) return;
  const r = runChecker(base, { '10.0.0.2': 'uuu', '10.0.0.1': 'uuu', '10.0.0.3': 'uuu' }, 3);
  assert.deepEqual(r.reloads, ['infra2'], r.log);
  assert.equal(r.writer, 'infra2');
  // A preferred node that fails is not chosen; the next fit one is.
  const r2 = runChecker(base, { '10.0.0.2': 'ddd', '10.0.0.1': 'uuu', '10.0.0.3': 'uuu' }, 3);
  assert.deepEqual(r2.reloads, ['infra1'], r2.log);
});

test('the writer lost: every node down for the hold-down, then the next fit node; its connections closed; no fail back', (t) => {
  if (skipNoSh(t)) return;
  // infra2 (the writer) fails from round 3: marked down at round 4 (fall 2),
  // the hold-down runs rounds 4-6 (300 ms), infra1 takes writes at round 7;
  // infra2 passes again from round 8 and stays out.
  const r = runChecker(base, { '10.0.0.2': 'uuddddduuu', '10.0.0.1': 'uuuuuuuuuu', '10.0.0.3': 'uuuuuuuuuu' }, 10);
  assert.deepEqual(r.reloads, ['infra2', null, 'infra1'], r.log);
  assert.equal(r.writer, 'infra1');
  assert.match(r.log, /the datastore writer infra2 is down: no datastore node for 300 ms/);
  assert.match(r.log, /datastore closed: no fit writer \(hold-down after losing infra2\)/);
  // The old writer's connections are closed; and a close still pending from
  // the hold-down's install never hits the new writer once it is up (the lab
  // test lost a create to that before: the new writer's connections were cut).
  assert.ok((r.ss.match(/^-K dst 10\.0\.0\.2 dport = :3307$/gm) ?? []).length >= 2, r.ss);
  assert.ok((r.ss.match(/^-K dst 10\.0\.0\.1 dport = :3307$/gm) ?? []).length >= 1, r.ss);
  assert.equal(r.ssUp, '', `closed while up:\n${r.ssUp}\nall:\n${r.ss}`);
});

test('with the hold-down off the next fit node takes writes at once; with no fit node the datastore stays closed', (t) => {
  if (skipNoSh(t)) return;
  const r = runChecker({ ...base, datastore: { ...ds, holdMs: 0 } }, { '10.0.0.2': 'uudddd', '10.0.0.1': 'uuuuuu', '10.0.0.3': 'uuuuuu' }, 6);
  assert.deepEqual(r.reloads, ['infra2', 'infra1'], r.log);
  const none = runChecker(base, { '10.0.0.2': 'uudddddd', '10.0.0.1': 'uudddddd', '10.0.0.3': 'uudddddd' }, 8);
  assert.deepEqual(none.reloads, ['infra2', null], none.log);
  assert.equal(none.writer, 'infra2', 'the lost writer stays named until another node is fit');
});

test('a new writer is the fit node holding kine\'s sessions, the one the other load balancer uses', (t) => {
  if (skipNoSh(t)) return;
  // Cold start while infra3 holds the sessions: not the preferred infra2.
  assert.deepEqual(runChecker(base, { '10.0.0.2': 'uu', '10.0.0.1': 'uu', '10.0.0.3': 'ss' }, 2).reloads, ['infra3']);
  // After a loss too.
  const r = runChecker(base, { '10.0.0.2': 'uuddddddd', '10.0.0.1': 'uuuuuuuuu', '10.0.0.3': 'uuuusssss' }, 9);
  assert.deepEqual(r.reloads, ['infra2', null, 'infra3'], r.log);
  // Two nodes holding sessions (one of them stale): the first fit node in order.
  assert.deepEqual(runChecker(base, { '10.0.0.2': 'uu', '10.0.0.1': 'ss', '10.0.0.3': 'ss' }, 2).reloads, ['infra2']);
});

test('the writer file survives a restart: a kept writer is not moved, and a name the file should not hold is ignored', (t) => {
  if (skipNoSh(t)) return;
  const open = renderDatastoreState(ds, 'infra3');
  // infra3 was the writer: a restarted checker keeps it although infra2 is preferred; the file is already right.
  const r = runChecker(base, { '10.0.0.2': 'uuu', '10.0.0.1': 'uuu', '10.0.0.3': 'uuu' }, 3, { writer: 'infra3', initial: open });
  assert.deepEqual(r.reloads, [], r.log);
  assert.equal(r.state, open);
  // Even while it fails one check (fall 2).
  assert.deepEqual(runChecker(base, { '10.0.0.2': 'uuu', '10.0.0.1': 'uuu', '10.0.0.3': 'duu' }, 3, { writer: 'infra3', initial: open }).reloads, []);
  assert.deepEqual(runChecker(base, { '10.0.0.2': 'uu', '10.0.0.1': 'uu', '10.0.0.3': 'uu' }, 2, { writer: '*' }).reloads, ['infra2']);
});

test('a checker restarted during a hold-down does not reopen the lost writer: a node the file marks down starts down', (t) => {
  if (skipNoSh(t)) return;
  // infra2 is the writer, closed (the hold-down ran when the checker stopped) and still failing.
  const r = runChecker(base, { '10.0.0.2': 'dddddd', '10.0.0.1': 'uuuuuu', '10.0.0.3': 'uuuuuu' }, 6, { writer: 'infra2' });
  assert.deepEqual(r.reloads, ['infra1'], r.log);
  assert.match(r.log, /the datastore writer infra2 is down: no datastore node for 300 ms/);
  // A writer up in the file starts up: one failed check does not close it (fall 2).
  assert.deepEqual(runChecker(base, { '10.0.0.2': 'duu', '10.0.0.1': 'uuu', '10.0.0.3': 'uuu' }, 3, { writer: 'infra2', initial: renderDatastoreState(ds, 'infra2') }).reloads, []);
});

test('with a virtual IP the datastore opens only on its holder, the hold-down after it took it; the other load balancer follows the writer the nodes show', (t) => {
  if (skipNoSh(t)) return;
  const vipInput = { ...base, datastore: { ...ds, virtualIP: '10.0.0.10', followMs: 200 } };
  // Without the address: closed every round, though the writer is chosen.
  const idle = runChecker(vipInput, { '10.0.0.2': 'uuuu', '10.0.0.1': 'uuuu', '10.0.0.3': 'uuuu' }, 4, { vip: 'nnnn' });
  assert.deepEqual(idle.reloads, [], idle.log);
  assert.equal(idle.writer, 'infra2');
  assert.match(idle.log, /datastore closed: this load balancer does not hold the virtual IP/);
  // The address arrives at round 3 (seen arriving: the hold-down from then, 300 ms): open at round 6.
  const took = runChecker(vipInput, { '10.0.0.2': 'uuuuuuu', '10.0.0.1': 'uuuuuuu', '10.0.0.3': 'uuuuuuu' }, 7, { vip: 'nnyyyyy' });
  assert.deepEqual(took.reloads, ['infra2'], took.log);
  // keepalived's time counts: a takeover at round 2 (1000200) holds until 1000500 although the address is there from the start.
  const marked = runChecker(vipInput, { '10.0.0.2': 'uuuuuu', '10.0.0.1': 'uuuuuu', '10.0.0.3': 'uuuuuu' }, 6, { vip: 'yyyyyy', takeoverAt: 1_000_200 });
  const opened = marked.log.split('\n').findIndex((l) => l.includes('datastore open'));
  assert.ok(opened >= 0, marked.log);
  assert.deepEqual(marked.reloads, ['infra2'], marked.log);
  // A restarted checker on the holder, long after the takeover: open at once (no hold-down on a restart).
  assert.deepEqual(runChecker(vipInput, { '10.0.0.2': 'u', '10.0.0.1': 'u', '10.0.0.3': 'u' }, 1, { vip: 'y', takeoverAt: 5 }).reloads, ['infra2']);
  // Without the address, the one node holding kine's sessions is followed once
  // it has been so for followMs (infra1 from round 3, 200 ms: at round 5).
  const follow = runChecker(vipInput, { '10.0.0.2': 'uuuuu', '10.0.0.1': 'uusss', '10.0.0.3': 'uuuuu' }, 5, { vip: 'nnnnn' });
  assert.equal(follow.writer, 'infra1', follow.log);
  assert.match(follow.log, /the datastore writer is now infra1/);
  assert.equal(runChecker(vipInput, { '10.0.0.2': 'uuuuu', '10.0.0.1': 'uussu', '10.0.0.3': 'uuuuu' }, 5, { vip: 'nnnnn' }).writer, 'infra2', 'less than followMs is not enough');
  // Two nodes claiming sessions (one stale): nothing is followed.
  assert.equal(runChecker(vipInput, { '10.0.0.2': 'uusss', '10.0.0.1': 'uusss', '10.0.0.3': 'uuuuu' }, 5, { vip: 'nnnnn' }).writer, 'infra2');
  // Not while taking the address (the lab's cut drill: the node cut off showed
  // stale sessions after the other load balancer closed the writer's): the
  // holder keeps its writer and opens it after the hold-down.
  const taking = runChecker(vipInput, { '10.0.0.2': 'uuuuuuu', '10.0.0.1': 'uusssss', '10.0.0.3': 'uuuuuuu' }, 7, { vip: 'yyyyyyy', takeoverAt: 1_000_200, writer: 'infra2' });
  assert.equal(taking.writer, 'infra2', taking.log);
  assert.deepEqual(taking.reloads, ['infra2'], taking.log);
  // ...nor just after it lost it to a takeover of its own (keepalived's time is recent).
  assert.equal(runChecker(vipInput, { '10.0.0.2': 'uuuu', '10.0.0.1': 'ssss', '10.0.0.3': 'uuuu' }, 4, { vip: 'nnnn', takeoverAt: 1_000_300, writer: 'infra2' }).writer, 'infra2');
});

test('the checker without a datastore renders no datastore part', () => {
  const { datastore: _omit, ...noDs } = base;
  const s = renderLbCheckScript(noDs);
  assert.doesNotMatch(s, /DSTATE|dwant|datastore/);
});
