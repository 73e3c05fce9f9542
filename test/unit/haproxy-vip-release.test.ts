// Giving up the virtual IP closes the datastore sessions through this
// HAProxy (issue 14). Measured in the lab (g-gap): when the VIP failed back
// to a machine that came back, a kine transaction through the other load
// balancer had run its INSERT and sent its COMMIT to the new VIP holder; the
// old HAProxy kept the server side open, the transaction held its id and
// lock on the writer, kine's fill of that id waited 35 s (in the poll loop
// that feeds every watch), then skipped it with a GAP line. Here: the rendered script and
// keepalived lines, the vip phase wiring, and a real HAProxy on loopback
// whose long-lived session through it is closed at the data node's end.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { renderHaproxyCfg } from '../../src/render/index.js';
import { renderKeepalivedConf } from '../../src/render/keepalived.js';
import { VIP_RELEASE_SCRIPT_PATH, renderVipReleaseScript } from '../../src/render/haproxy-datastore.js';
import { vipDesired } from '../../src/phases/vip.js';
import { loadClusterFile } from '../../src/spec/index.js';
import { Secret } from '../../src/util/secret.js';
import { which, withTempFile } from '../fixtures/render/helpers.js';
import { galeraLbKeepalived } from '../fixtures/render/keepalived-galera-lb.js';
import { datastoreOnlyInput, loopbackHaproxyCfg, startHaproxy } from '../support/haproxy-loopback.js';
import { StandinNode, freePorts, openSession, sleep } from '../support/standin-nodes.js';

test('giving up the virtual IP runs the release script (BACKUP, FAULT, keepalived stopping), which closes every datastore session and never fails', (t) => {
  const script = renderVipReleaseScript('/run/haproxy/admin.sock', ['infra2', 'infra1']);
  assert.match(script, /^echo 'shutdown sessions server k3s_datastore\/infra1; shutdown sessions server k3s_datastore\/infra2' \| socat - UNIX:\/run\/haproxy\/admin\.sock >\/dev\/null 2>&1$/m);
  assert.match(script, /^exit 0$/m);
  assert.throws(() => renderVipReleaseScript('/run/haproxy/admin.sock', ['infra1; reload']), /nodes\[0\]/);
  const conf = renderKeepalivedConf({ ...galeraLbKeepalived, notifyRelease: VIP_RELEASE_SCRIPT_PATH });
  for (const k of ['notify_backup', 'notify_fault', 'notify_stop']) assert.match(conf, new RegExp(`^\\s+${k} "/usr/local/sbin/k8s-ha-datastore-release"$`, 'm'));
  assert.doesNotMatch(renderKeepalivedConf(galeraLbKeepalived), /notify_/);
  const keepalived = which('keepalived');
  if (keepalived === undefined) return t.skip('keepalived not installed: the config test did not run');
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-release-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // keepalived checks that the scripts exist and are executable.
  const scriptPath = join(dir, 'release.sh');
  const alive = join(dir, 'alive.sh');
  writeFileSync(scriptPath, script, { mode: 0o755 });
  writeFileSync(alive, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  writeFileSync(join(dir, 'keepalived.conf'), renderKeepalivedConf({ ...galeraLbKeepalived, checkScript: alive, notifyRelease: scriptPath }));
  const r = spawnSync(keepalived, ['--config-test', '-f', join(dir, 'keepalived.conf')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr + r.stdout);
});

test('the vip phase installs the release script with HAProxy and Galera, and not with nginx', () => {
  const cluster = (kind: string) => {
    const doc = parse(readFileSync('examples/ha-galera.yaml', 'utf8')) as Record<string, Record<string, unknown>>;
    doc.loadBalancer = { ...doc.loadBalancer, kind };
    return withTempFile('cluster.yaml', stringify(doc), (path) => loadClusterFile(path, { HOME: '/root' }, { sshKeys: false })).cluster!;
  };
  const d = vipDesired(cluster('haproxy'), 'infra1', 24, new Secret('vrrppass'));
  const release = d.files?.find((f) => f.path === VIP_RELEASE_SCRIPT_PATH);
  assert.ok(release, 'the release script is installed');
  assert.equal(release.mode, 0o755);
  assert.match(release.content, /shutdown sessions server k3s_datastore\/infra1; shutdown sessions server k3s_datastore\/infra2'/);
  const conf = d.files?.find((f) => f.path.endsWith('keepalived.conf'))?.content ?? '';
  assert.match(conf, /notify_backup "\/usr\/local\/sbin\/k8s-ha-datastore-release"/);
  // Before the config that names it: keepalived refuses a missing script.
  assert.ok(d.files!.findIndex((f) => f.path === VIP_RELEASE_SCRIPT_PATH) < d.files!.findIndex((f) => f.path.endsWith('keepalived.conf')));
  const n = vipDesired(cluster('nginx'), 'infra1', 24, new Secret('vrrppass'));
  assert.equal(n.files?.some((f) => f.path === VIP_RELEASE_SCRIPT_PATH), false);
});

test('in a real HAProxy, the release script closes a long-lived datastore session at the data node\'s end; new connections still reach the writer', { timeout: 30_000 }, async (t) => {
  const haproxy = which('haproxy');
  if (haproxy === undefined) return t.skip('haproxy not installed');
  if (which('socat') === undefined) return t.skip('socat not installed');
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-release-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [apiPort, dsPort, peerPort, a, ac, b, bc] = await freePorts(7);
  // Stand-in data nodes that keep each session open, like a kine connection
  // between statements; their checks always pass.
  const nodes = [new StandinNode({ name: 'infra1', port: a!, checkPort: ac! }), new StandinNode({ name: 'infra2', port: b!, checkPort: bc! })];
  await Promise.all(nodes.map((n) => n.start()));
  t.after(() => Promise.all(nodes.map((n) => n.kill())));
  const sessions = () => nodes.flatMap((n) => n.sessions);
  const cfg = renderHaproxyCfg(
    datastoreOnlyInput(apiPort!, {
      listenPort: dsPort!,
      nodes: nodes.map((n) => ({ name: n.name, address: '127.0.0.1', port: n.port })),
      checkPort: ac!,
      intervalMs: 400,
      fall: 2,
      rise: 1,
      holdMs: 800,
      peers: { self: 'infra1', all: [{ name: 'infra1', address: '127.0.0.1' }], port: peerPort! },
    }),
  );
  const sock = join(dir, 'admin.sock');
  await startHaproxy(t, haproxy, dir, loopbackHaproxyCfg(cfg, sock, nodes), 1200);

  const kine = await openSession(dsPort!);
  assert.equal(kine.greeting, 'infra1');
  await sleep(300);
  assert.equal(sessions().length, 1);
  assert.equal(sessions()[0]!.closedAt, null, 'the session stays open until released');

  const script = join(dir, 'release.sh');
  writeFileSync(script, renderVipReleaseScript(sock, nodes.map((n) => n.name)), { mode: 0o755 });
  const ran = performance.now();
  assert.equal(spawnSync(script).status, 0);
  await Promise.race([kine.closedAt, sleep(3000)]);
  await sleep(100);
  const closedAt = sessions()[0]!.closedAt;
  assert.ok(closedAt !== null, 'the data node saw its session closed');
  t.diagnostic(`session closed at the data node ${Math.round(closedAt - ran)} ms after the release script ran`);
  assert.ok(closedAt - ran < 2000, `closed ${Math.round(closedAt - ran)} ms after the script`);

  // The writer did not move: a new connection reaches infra1 again.
  const next = await openSession(dsPort!);
  assert.equal(next.greeting, 'infra1');
  next.socket.destroy();
  // Without HAProxy (no admin socket) the script still exits 0.
  writeFileSync(script, renderVipReleaseScript(join(dir, 'missing.sock'), ['infra1']), { mode: 0o755 });
  assert.equal(spawnSync(script).status, 0);
});
