// The Galera datastore route in a real nginx on loopback (issue 14), run by
// the real k8s-ha-lbcheck script: two stand-in data nodes on 127.0.0.1 and
// 127.0.0.2 (a TCP listener that greets with its name, like MySQL's
// server-first handshake, and an HTTP check that answers 200 or 503, as
// k8s-ha-galera-check does), the rendered nginx.conf and checker, and a
// client that connects over and over. What kine's safety rests on, as in
// test/unit/haproxy-writer-hold.test.ts: after the writer is lost every new
// connection is refused for the hold-down, then the next node takes them;
// the writer never fails back; a connection to a killed writer never lands
// on the other node before the hold-down; the old writer's connections are
// closed although nginx's old workers keep them across the reload; and with
// a virtual IP the datastore is refused where the address is not, and for
// the hold-down after keepalived's takeover script ran.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderLbCheckScript, renderUpstreamState, type LbCheckInput } from '../../src/render/lbcheck.js';
import { renderDatastoreState, renderNginxTakeoverScript, type NginxDatastoreInput } from '../../src/render/nginx-datastore.js';
import { renderNginxConf } from '../../src/render/nginx.js';
import { which } from '../fixtures/render/helpers.js';
import { skipOrFail } from '../../lab/testing.js';
import { StandinNode, connectOnce, freePorts, openSession, probe, sleep } from '../support/standin-nodes.js';

const HOLD_MS = 800;
const VIP = '10.255.255.10';
/** What k8s-ha-galera-check answers. */
const checkBody = (healthy: boolean) => (healthy ? 'wsrep_local_state_comment=Synced kine_sessions=0 wsrep_causal_read=ON\n' : 'wsrep_local_state_comment=Donor/Desynced\n');

async function until<T>(what: string, ms: number, f: () => Promise<T | null>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== null) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

test('datastore route in a real nginx with k8s-ha-lbcheck: one writer, a hold-down after it is lost, no fail back, its connections closed, the virtual IP gate', { timeout: 90_000 }, async (t) => {
  const nginx = which('nginx');
  if (nginx === undefined) return t.skip(skipOrFail('nginx not installed') || undefined);
  if (process.getuid?.() !== 0) return t.skip(skipOrFail('needs root: ss -K closes nginx\'s sockets') || undefined);
  for (const p of ['curl', 'ss']) if (which(p) === undefined) return t.skip(skipOrFail(`${p} not installed`) || undefined);
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-nginx-hold-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Free on 0.0.0.0: the nodes listen on 127.0.0.1 and 127.0.0.2 with the same ports.
  const [apiPort, dsPort, nodePort, checkPort, deadApi] = await freePorts(5, '0.0.0.0');
  const nodeA = new StandinNode({ name: 'infra1', address: '127.0.0.1', port: nodePort!, checkPort: checkPort!, checkBody });
  const nodeB = new StandinNode({ name: 'infra2', address: '127.0.0.2', port: nodePort!, checkPort: checkPort!, checkBody });
  await nodeA.start();
  await nodeB.start();
  t.after(() => Promise.all([nodeA.kill(), nodeB.kill()]));

  const ds: NginxDatastoreInput = {
    listenPort: dsPort!,
    nodes: [
      { name: 'infra1', address: '127.0.0.1', port: nodePort! },
      { name: 'infra2', address: '127.0.0.2', port: nodePort! },
    ],
    checkPort: checkPort!,
    holdMs: HOLD_MS,
    virtualIP: VIP,
    proxyProtocol: true,
    statePath: join(dir, 'datastore.conf'),
    writerPath: join(dir, 'lib', 'writer'),
    takeoverPath: join(dir, 'run', 'takeover'),
  };
  // Each check's timeout is the interval: 100 ms timed a healthy stand-in out on this loaded host.
  const check: LbCheckInput = { servers: [{ name: 'server1', address: '127.0.0.1', port: deadApi! }], maxFails: 1, failTimeoutMs: 10_000, path: '/ping', intervalMs: 400, fall: 2, rise: 1, statePath: join(dir, 'upstream.conf'), holdPath: join(dir, 'lb-held'), datastore: ds };
  writeFileSync(join(dir, 'upstream.conf'), renderUpstreamState(check));
  writeFileSync(ds.statePath!, renderDatastoreState(ds));
  const pidFile = join(dir, 'nginx.pid');
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    renderNginxConf({ listenPort: apiPort!, listenAddress: '127.0.0.1', servers: check.servers, connectTimeoutMs: 1000, idleTimeoutMs: 3_600_000, maxFails: 1, failTimeoutMs: 10_000, upstreamInclude: check.statePath!, datastore: ds })
      .replace('pid /run/nginx.pid;', `pid ${pidFile};`)
      .replace('error_log /var/log/nginx/error.log;', `error_log ${join(dir, 'error.log')} info;`),
  );
  const proc: ChildProcess = spawn(nginx, ['-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let nginxErr = '';
  proc.stderr!.on('data', (d) => (nginxErr += d.toString()));
  t.after(() => proc.kill('SIGKILL'));

  // The checker with its commands: nginx and systemctl point at this nginx; ip shows this file.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const addrs = join(dir, 'addrs');
  const withVip = `2: lo    inet ${VIP}/32 scope global lo\n`;
  writeFileSync(addrs, withVip);
  const fake = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  fake('nginx', `exec ${nginx} -c ${conf} "$@"`);
  fake('systemctl', `[ "$1 $2" = "reload nginx" ] || exit 1\nkill -HUP "$(cat ${pidFile})"`);
  fake('ip', `cat ${addrs}`);
  const script = join(dir, 'k8s-ha-lbcheck');
  writeFileSync(script, renderLbCheckScript(check));
  const checker = spawn('sh', [script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}`, K8S_HA_LBCHECK_PIDFILE: pidFile } });
  let log = '';
  checker.stdout!.on('data', (d) => (log += d.toString()));
  checker.stderr!.on('data', (d) => (log += d.toString()));
  t.after(() => checker.kill('SIGTERM'));
  const ctx = () => `\nchecker:\n${log}\nnginx:\n${nginxErr}${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8').split('\n').filter((l) => /emerg|alert|crit/.test(l)).join('\n') : ''}`;

  // 1. Cold start: the preferred node takes every connection.
  await until('infra1 answering through nginx', 15_000, async () => ((await connectOnce(dsPort!)) === 'infra1' ? true : null)).catch((e: Error) => assert.fail(e.message + ctx()));
  const start = await probe(dsPort!, 800);
  assert.ok(start.every((r) => r.got === 'infra1'), JSON.stringify(start) + ctx());
  assert.equal(readFileSync(ds.writerPath!, 'utf8').trim(), 'infra1');

  // 2. infra1 fails its check: refused for the hold-down, then infra2; the
  //    connection kept on infra1 is closed (an old worker held it).
  const kept = await openSession(dsPort!);
  assert.equal(kept.greeting, 'infra1');
  let failedAt = 0;
  const lost = await probe(dsPort!, HOLD_MS + 3000, () => {
    failedAt = performance.now();
    nodeA.healthy = false;
  });
  const firstRefused = lost.find((r) => r.got === 'refused');
  const firstB = lost.find((r) => r.got === 'infra2');
  assert.ok(firstRefused && firstB, JSON.stringify(lost) + ctx());
  assert.ok(firstB.at - firstRefused.from >= HOLD_MS, `infra2 answered ${Math.round(firstB.at - firstRefused.from)} ms after the first refused connection started (hold-down ${HOLD_MS} ms)${ctx()}`);
  assert.ok(lost.filter((r) => r.from > firstB.at).every((r) => r.got === 'infra2'), `after the hold-down: infra2 only: ${JSON.stringify(lost)}`);
  assert.ok(lost.filter((r) => r.from < firstRefused.from).every((r) => r.got === 'infra1'), 'infra1 until the hold-down');
  const closedAfter = (await Promise.race([kept.closedAt, sleep(3000).then(() => -1)])) as number;
  assert.ok(closedAfter > 0, `the connection kept on infra1 is closed${ctx()}`);
  const closeMs = Math.round(closedAfter - failedAt);

  // 3. infra1 healthy again: the writer stays infra2 (no fail back).
  nodeA.healthy = true;
  await sleep(1200);
  const back = await probe(dsPort!, 800);
  assert.ok(back.length >= 1 && back.every((r) => r.got === 'infra2'), JSON.stringify(back));
  assert.equal(readFileSync(ds.writerPath!, 'utf8').trim(), 'infra2');

  // 4. infra2 killed (refuses connections before the check marks it down):
  //    connections fail, none reaches infra1 before the hold-down has run.
  const killed = await probe(dsPort!, HOLD_MS + 3000, () => nodeB.kill());
  const firstFail = killed.find((r) => r.got !== 'infra2');
  const firstA = killed.find((r) => r.got === 'infra1');
  assert.ok(firstFail && firstA, JSON.stringify(killed) + ctx());
  assert.ok(firstA.at - firstFail.from >= HOLD_MS, `infra1 answered ${Math.round(firstA.at - firstFail.from)} ms after the first failed connection started: ${JSON.stringify(killed)}`);

  // 5. The virtual IP leaves: refused (no writer change); it comes back and
  //    keepalived's takeover script runs: refused for the hold-down, then infra1.
  writeFileSync(addrs, '');
  await until('the datastore refused without the virtual IP', 5000, async () => ((await connectOnce(dsPort!)) === 'refused' ? true : null));
  const away = await probe(dsPort!, 600);
  assert.ok(away.every((r) => r.got === 'refused'), JSON.stringify(away));
  const takeover = join(dir, 'takeover.sh');
  writeFileSync(takeover, renderNginxTakeoverScript(ds.takeoverPath!));
  const vip = await probe(dsPort!, HOLD_MS + 2000, () => {
    writeFileSync(addrs, withVip);
    assert.equal(spawnSync('sh', [takeover]).status, 0);
  });
  const firstVipA = vip.find((r) => r.got === 'infra1');
  assert.ok(firstVipA, JSON.stringify(vip) + ctx());
  assert.ok(vip.filter((r) => r.at < firstVipA.from).every((r) => r.got === 'refused'), JSON.stringify(vip));
  assert.equal(readFileSync(ds.writerPath!, 'utf8').trim(), 'infra1');
  const vipFirstFrom = vip[0]!.from;
  assert.ok(firstVipA.at - vipFirstFrom >= HOLD_MS, `infra1 answered ${Math.round(firstVipA.at - vipFirstFrom)} ms after the takeover (hold-down ${HOLD_MS} ms): ${JSON.stringify(vip)}`);
  assert.equal(proc.exitCode, null, nginxErr);
  t.diagnostic(`check failure: no node for ${Math.round(firstB.at - firstRefused.from)} ms, the kept connection closed ${closeMs} ms after the check began failing; kill: ${Math.round(firstA.at - firstFail.from)} ms; takeover: ${Math.round(firstVipA.at - vipFirstFrom)} ms (hold-down ${HOLD_MS} ms, check 400 ms x 2)`);
});
