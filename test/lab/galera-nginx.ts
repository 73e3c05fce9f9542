// The nginx pass of test/lab/galera.test.ts (issue 14), on its lab: the
// cluster switched from HAProxy to nginx by apply, so k8s-ha-lbcheck routes
// the Galera datastore (render/nginx-datastore.ts); then the writer killed,
// and the machine holding the writer and the virtual IP cut off, under write
// load through the virtual IP, with the same assertions as the HAProxy drills. Kept in its own file so the drills
// of the main file and this pass change apart.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { parse, stringify } from 'yaml';
import { PlanChangedError } from '../../src/engine/engine.js';
import type { Lab } from '../../lab/index.js';
import { waitFor } from '../../lab/testing.js';
import { FAULTS, journalSince, moveWriterTo, runFault, vipHolder, writerOf, type Fault, type FaultResult } from '../../lab/galera-drill.js';
import type { KubeClient } from '../../src/kube/client.js';
import { ClusterRun } from '../../src/cluster/open.js';
import { NGINX_DATASTORE_STATE_PATH, parseDatastoreState } from '../../src/render/nginx-datastore.js';

const NODES = ['infra1', 'infra2'];
const SERVERS = ['server1', 'server2'];

export interface GaleraLab {
  lab: Lab;
  file: string;
  apply: (lab: Lab, file: string) => Promise<{ changed: number; summaries: string[] }>;
  kube: (lab: Lab, file: string) => Promise<KubeClient>;
  open: (lab: Lab, file: string) => Promise<ClusterRun>;
  fullSize: (lab: Lab, timeoutMs?: number) => Promise<void>;
  describe: (r: FaultResult) => string;
}

/** The k3s servers' addresses among the kine sessions on a data node. */
async function clients(lab: Lab, node: string): Promise<string[]> {
  const r = await lab.exec(node, ['mariadb', '-N', '-B', '-e', "SELECT DISTINCT SUBSTRING_INDEX(host, ':', 1) FROM information_schema.processlist WHERE user = 'k3s'"]);
  return r.stdout.trim().split('\n').filter(Boolean).sort();
}

/** The node each load balancer's nginx has up in its datastore upstream (null: none). */
async function upInNginx(lab: Lab, lb: string): Promise<string | null> {
  return parseDatastoreState((await lab.exec(lb, ['cat', NGINX_DATASTORE_STATE_PATH])).stdout);
}

export async function nginxPass(t: TestContext, g: GaleraLab): Promise<void> {
  const { lab, file } = g;
  const results: FaultResult[] = [];

  await t.test('nginx as the routing point: switched from HAProxy by apply; both load balancers name one writer, only the VIP holder routes to it, kine is connected only to it; a second plan is empty', async () => {
    const doc = parse(readFileSync(file, 'utf8')) as { loadBalancer: Record<string, unknown> };
    doc.loadBalancer = { ...doc.loadBalancer, kind: 'nginx' };
    writeFileSync(file, stringify(doc));
    const t0 = Date.now();
    // A k3s server that crash-looped through the outage before can still be restarting: the
    // engine then stops with PlanChangedError and says to apply again, which is what a user does.
    let r: { changed: number; summaries: string[] };
    try {
      r = await g.apply(lab, file);
    } catch (e) {
      if (!(e instanceof PlanChangedError)) throw e;
      t.diagnostic(`HAProxy to nginx: the first apply stopped (${e.message.split('\n').slice(1, 3).join(' ').trim()}); applying again`);
      const first = (e as PlanChangedError & { summaries?: string[] }).summaries ?? [];
      const again = await g.apply(lab, file);
      r = { changed: again.changed, summaries: [...first, ...again.summaries] };
    }
    t.diagnostic(`HAProxy to nginx by apply: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${r.changed} changes`);
    assert.ok(r.summaries.some((s) => /^infra1: .*stop and disable haproxy/.test(s)), r.summaries.join('\n'));
    await g.fullSize(lab);
    const c = await g.kube(lab, file);
    await c.waitForReadyNodes(3, { timeoutMs: 120_000 });
    const writer = await waitFor('both load balancers name one writer, every kine client on it', 60_000, async () => {
      const [a, b] = await Promise.all(NODES.map((n) => writerOf(lab, n, 'nginx')));
      if (!a || a !== b) return null;
      const other = NODES.find((n) => n !== a)!;
      const [on, off] = await Promise.all([clients(lab, a), clients(lab, other)]);
      return JSON.stringify(on) === JSON.stringify(SERVERS.map((s) => lab.machine(s).address).sort()) && off.length === 0 ? a : null;
    });
    t.diagnostic(`the writer through nginx: ${writer}`);
    const holder = await vipHolder(lab);
    assert.ok(holder && NODES.includes(holder), `a VIP holder: ${holder}`);
    assert.equal(await upInNginx(lab, holder), writer, 'the VIP holder has exactly the writer up');
    assert.equal(await upInNginx(lab, NODES.find((n) => n !== holder)!), null, 'the other load balancer has every node down');
    const run = await g.open(lab, file);
    const plan = await run.plan();
    await run.close();
    assert.equal(plan.empty, true, JSON.stringify(plan.steps.map((s) => [s.host, s.changes.map((x) => x.summary)])));
  });

  const faults: Fault[] = ['kill-writer', 'cut-writer'];
  for (const fault of faults) {
    await t.test(`through nginx, ${FAULTS[fault].what}: writes resume on the other node, no GAP line, the watch sees every ADDED event in order, and the node rejoins on apply`, async () => {
      const c = await g.kube(lab, file);
      let w = await writerOf(lab, 'infra1', 'nginx');
      assert.ok(w && NODES.includes(w), `a writer: ${w}`);
      if (fault === 'cut-writer') {
        // The machine cut off holds the VIP and the writer: the address moves
        // to the other load balancer (its takeover hold-down), and back when
        // the cut heals (keepalived preempts), where the returning load
        // balancer must route to the writer the other one chose.
        const holder = await vipHolder(lab);
        assert.ok(holder && NODES.includes(holder), `a VIP holder: ${holder}`);
        await moveWriterTo(lab, holder, NODES, 30_000, 'nginx');
        w = holder;
      }
      const since = journalSince();
      // After a cut, writes go on for 12 s: keepalived moves the VIP back to
      // the healed machine (it preempts) within that window in the lab, so the
      // verdict covers the fail-back too.
      const r = await runFault(lab, c, fault, { writerNode: w, servers: SERVERS, prefix: `nginx-${fault}`, ...(fault === 'cut-writer' ? { afterMs: 12_000 } : {}) });
      results.push(r);
      t.diagnostic(`nginx, ${g.describe(r)}`);
      for (const l of [...r.lostDetail, ...r.orderDetail]) t.diagnostic(l);
      // What each checker decided, for the record (the datastore lines of its journal).
      for (const lb of NODES) {
        const j = await lab.exec(lb, ['sh', '-c', `journalctl -u k8s-ha-lbcheck --since '${since}' --no-pager -o short-precise | grep -E 'datastore' || true`], { allowFailure: true });
        t.diagnostic(`${lb} k8s-ha-lbcheck: ${j.stdout.trim().split('\n').map((l) => l.replace(/^\S+ (\S+) \S+ \S+: k8s-ha-lbcheck: /, '$1 ')).join(' | ')}`);
      }
      assert.deepEqual(r.gapLines, []);
      assert.ok(r.verdict.acked > 50, `writes went on: ${r.verdict.acked} acknowledged`);
      assert.ok(r.writeGapMs < 30_000, `writes resumed within 30 s (took ${r.writeGapMs} ms)`);
      assert.deepEqual(r.verdict.outOfOrder, []);
      assert.deepEqual(r.verdict.rvWentDown.filter((x) => x.startsWith('watch')), []);
      assert.deepEqual(r.verdict.refusals, [], 'no re-watch refused (410 Gone would mean a broken watch)');
      // Lost acknowledged creates are asserted over both faults below (a todo: measured, not 0).
      assert.deepEqual(r.verdict.unseen.filter((n) => !r.verdict.lost.includes(n)), [], r.unseenDetail.join('\n'));
      const other = NODES.find((n) => n !== w)!;
      if (fault === 'cut-writer') {
        const back = await waitFor('the VIP back on the healed machine', 30_000, async () => ((await vipHolder(lab)) === w ? true : null)).then(() => 'back', () => 'not back');
        t.diagnostic(`the VIP after the cut healed: ${back} on ${w}`);
      }
      // Both load balancers name one writer. After a kill it is the other node
      // (the VIP holder chose it, the other followed). After a cut the
      // returning VIP holder follows the node holding kine's sessions, unless
      // the healed node shows stale sessions too: then it may take its
      // preferred node back, a failover behind the takeover hold-down (README
      // "How the two load balancers agree"; seen 2026-12-01 19:26) - one
      // writer either way, which is what must hold.
      const agreed = await waitFor('both load balancers name one writer', 30_000, async () => {
        const [a, b] = await Promise.all(NODES.map((n) => writerOf(lab, n, 'nginx')));
        return a && a === b && (fault === 'cut-writer' || a === other) ? a : null;
      });
      t.diagnostic(`the writer through nginx after ${fault}: ${agreed}${agreed === other ? '' : ' (moved back to the healed node)'}`);
      const again = await g.apply(lab, file);
      t.diagnostic(`apply after ${fault} through nginx: ${again.summaries.join('; ') || 'nothing to do'}`);
      assert.ok(!again.summaries.some((s) => s.includes('bootstrap')), 'no bootstrap while a primary component runs');
      await g.fullSize(lab);
    });
  }

  // One acknowledged create was lost in 12 drills before the pending-close fix, and one at a
  // cut since (2026-12-01 19:26: a stale pooled connection through the old VIP holder used
  // after the new holder's hold-down; README "Galera datastore"). A todo that runs and prints
  // what was lost, until it holds.
  await t.test('through nginx, every acknowledged write survived every failover', { todo: 'kine v0.17 acknowledges a create whose INSERT failed; a stale pooled connection used after a VIP move is not covered by the hold-downs' }, () => {
    assert.equal(results.length, faults.length, 'every fault ran');
    assert.deepEqual(results.flatMap((r) => r.verdict.lost.map((n) => `${r.fault}: ${n}`)), []);
    t.diagnostic(`nginx write gaps ${results.map((r) => `${r.fault} ${(r.writeGapMs / 1000).toFixed(2)} s`).join(', ')}; new gap rows ${results.map((r) => `${r.fault} ${r.newGapRows}`).join(', ')}`);
  });
}
