// The Galera datastore route in a real HAProxy on loopback (issue 14): two
// stand-in data nodes (a TCP listener that greets with its name, like MySQL's
// server-first handshake, and an HTTP check that answers 200 or 503), the
// rendered datastore listener, and a client that connects over and over.
// What kine's safety rests on: after the writer is lost every new connection
// is refused for the hold-down, then the next node takes them; the writer
// never fails back; and a retry while the dead writer is still marked up
// never lands on the other node before the hold-down.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderHaproxyCfg } from '../../src/render/index.js';
import { renderVipHoldScript } from '../../src/render/haproxy-datastore.js';
import { which } from '../fixtures/render/helpers.js';
import { datastoreOnlyInput, loopbackHaproxyCfg, startHaproxy } from '../support/haproxy-loopback.js';
import { StandinNode, freePorts, probe, sleep } from '../support/standin-nodes.js';

const HOLD_MS = 800;

test('datastore route in a real HAProxy: a hold-down after the writer is lost, no fail back, no retry past the hold-down', { timeout: 60_000 }, async (t) => {
  const haproxy = which('haproxy');
  if (haproxy === undefined) return t.skip('haproxy not installed');
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-hold-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [apiPort, dsPort, peerPort, a, ac, b, bc] = await freePorts(7);
  // Greet and close: each probe connection needs only the name.
  const nodeA = new StandinNode({ name: 'infra1', port: a!, checkPort: ac!, session: 'close' });
  const nodeB = new StandinNode({ name: 'infra2', port: b!, checkPort: bc!, session: 'close' });
  await nodeA.start();
  await nodeB.start();
  t.after(() => Promise.all([nodeA.kill(), nodeB.kill()]));
  const cfg = renderHaproxyCfg(
    datastoreOnlyInput(apiPort!, {
      listenPort: dsPort!,
      // The check ports differ per node here (one host); in a cluster they are all checkPort.
      nodes: [
        { name: 'infra1', address: '127.0.0.1', port: a! },
        { name: 'infra2', address: '127.0.0.1', port: b! },
      ],
      checkPort: ac!,
      // Each check's timeout is the interval: 100 ms marked a healthy stand-in down on a loaded host.
      intervalMs: 400,
      fall: 2,
      rise: 1,
      holdMs: HOLD_MS,
      peers: { self: 'infra1', all: [{ name: 'infra1', address: '127.0.0.1' }], port: peerPort! },
    }),
  );
  await startHaproxy(t, haproxy, dir, loopbackHaproxyCfg(cfg, join(dir, 'admin.sock'), [nodeA, nodeB]), 800);

  // 1. The preferred node takes every connection.
  const start = await probe(dsPort!, 1000);
  assert.ok(start.length >= 1 && start.every((r) => r.got === 'infra1'), JSON.stringify(start));

  // 2. infra1 fails its check: refused for the hold-down, then infra2.
  const lost = await probe(dsPort!, HOLD_MS + 2500, async () => {
    nodeA.healthy = false;
  });
  const firstRefused = lost.find((r) => r.got === 'refused');
  const firstB = lost.find((r) => r.got === 'infra2');
  assert.ok(firstRefused && firstB, JSON.stringify(lost));
  // The first refused connection started before the hold-down did, and
  // infra2's first answer came after it ended: a lower bound that holds
  // however late a loaded host delivers the answers. 5 ms of slack: HAProxy
  // reads its clock once per loop in whole milliseconds, Node in fractions
  // (a run measured 799.6 ms, reported as 800).
  assert.ok(firstB.at - firstRefused.from >= HOLD_MS - 5, `infra2 answered ${Math.round(firstB.at - firstRefused.from)} ms after the first refused connection started (hold-down ${HOLD_MS} ms)`);
  assert.ok(lost.filter((r) => r.at > firstB.at).every((r) => r.got === 'infra2'), 'after the hold-down: infra2 only');

  // 3. infra1 healthy again: the writer stays infra2 (no fail back).
  nodeA.healthy = true;
  await sleep(400);
  const back = await probe(dsPort!, 600);
  assert.ok(back.length >= 1 && back.every((r) => r.got === 'infra2'), JSON.stringify(back));
  // ...and the hold table is cleared, so the next loss starts a new hold-down.
  const hold = spawnSync('socat', ['-', `UNIX:${join(dir, 'admin.sock')}`], { input: 'show table k3s_datastore_hold\n' }).stdout.toString();
  assert.match(hold, /key=1 .*gpt0=0\b/, hold);

  // 4. infra2 killed (refuses connections before the check marks it down):
  //    connections fail, none reaches infra1 before the hold-down has run.
  const killed = await probe(dsPort!, HOLD_MS + 3000, () => nodeB.kill());
  const firstFail = killed.find((r) => r.got !== 'infra2');
  const firstA = killed.find((r) => r.got === 'infra1');
  assert.ok(firstFail && firstA, JSON.stringify(killed));
  assert.ok(firstA.at - firstFail.from >= HOLD_MS - 5, `infra1 answered ${Math.round(firstA.at - firstFail.from)} ms after the first failed connection started: ${JSON.stringify(killed)}`);
  // 5. keepalived's notify_master script on this load balancer: refused for
  //    the hold-down, then the same writer again.
  const script = join(dir, 'hold.sh');
  writeFileSync(script, renderVipHoldScript(join(dir, 'admin.sock')), { mode: 0o755 });
  let ran = -1;
  const vip = await probe(dsPort!, HOLD_MS + 2000, async () => {
    await sleep(200);
    ran = performance.now();
    assert.equal(spawnSync(script).status, 0);
  });
  const refusedVip = vip.filter((r) => r.got === 'refused');
  const afterVip = vip.filter((r) => r.got === 'infra1' && r.from > refusedVip[0]!.from);
  assert.ok(refusedVip.length > 0 && afterVip.length > 0, JSON.stringify(vip));
  assert.ok(afterVip[0]!.at - refusedVip[0]!.from >= HOLD_MS * 0.9, `after the VIP hold: ${JSON.stringify(vip)}`);
  assert.ok(vip.every((r) => r.got !== 'infra2'), 'the writer stays infra1');
  void ran;
  t.diagnostic(`check failure: no node for ${Math.round(firstB.at - firstRefused.from)} ms; kill: ${Math.round(firstA.at - firstFail.from)} ms (hold-down ${HOLD_MS} ms, check 400 ms x 2)`);
});
