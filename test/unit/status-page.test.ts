import assert from 'node:assert/strict';
import { test } from 'node:test';
import { degradations, type StatusSnapshot } from '../../src/status/model.js';
import { pageModel, type Health, type PageModel } from '../../src/status/page/model.js';
import { liveParts, renderDocument, type PageView } from '../../src/status/page/render.js';
import { changes, Timeline } from '../../src/status/page/timeline.js';
import { agentNotReady, apiDown, datastoreDown, healthySnapshot, poolFull, primaryLbDown, serverDown, splitBrain, vipNowhere } from '../support/status-snapshots.js';

const health = (m: PageModel, id: string): Health | undefined => m.elements.find((e) => e.id === id)?.health;
const reason = (m: PageModel, id: string): string => m.elements.find((e) => e.id === id)?.reason ?? '';
const fresh = (model: PageModel | null, timeline: PageView['timeline'] = []): PageView => ({ model, timeline, collector: { state: 'fresh', refreshMs: 2000, timeoutMs: 10000 } });
const doc = (v: PageView) => renderDocument(v, { cssPath: '/assets/page.css', jsPath: '/assets/page.js', eventsPath: '/events', jsonPath: '/status.json', quietMs: 30000 });

test('a healthy cluster: every element in its tier is healthy, the VIP is on lb1, the degraded list is the same as status --json', () => {
  const s = healthySnapshot();
  const m = pageModel(s, { desired: { k3s: 'v1.31.4+k3s1', metallb: 'v0.14.9' } });
  assert.equal(m.healthy, true);
  assert.deepEqual(m.degraded, degradations(s));
  assert.deepEqual(
    m.elements.map((e) => `${e.tier}:${e.label}:${e.health}`),
    ['clients:API clients:ok', 'vip:10.0.0.10:ok', 'lb:lb1:ok', 'lb:lb2:ok', 'server:server1:ok', 'server:server2:ok', 'agent:agent1:ok', 'agent:agent2:ok', 'datastore:lb1:ok'],
  );
  assert.equal(m.vipHolder, 'lb1');
  assert.equal(reason(m, 'datastore:lb1'), 'answering; 5.1 MiB, 1834 kine rows');
  // Edges: clients -> VIP -> the holder (solid) and the standby (dashed); each LB -> each server.
  assert.deepEqual(m.edges.filter((e) => e.from === 'vip').map((e) => `${e.to}:${e.standby ? 'standby' : 'active'}`), ['lb:lb1:active', 'lb:lb2:standby']);
  assert.equal(m.edges.filter((e) => e.from.startsWith('lb:') && e.health === 'ok').length, 4);
  assert.deepEqual(m.pools, [{ name: 'default', used: 1, size: 6, services: ['web/shop = 10.0.0.50'], health: 'ok' }]);
  assert.deepEqual(m.versions, [['k3s v1.31.4+k3s1', 'every node'], ['MariaDB 10.11.6-MariaDB-0+deb12u1', 'lb1'], ['nginx', 'lb1, lb2'], ['MetalLB v0.14.9', 'the cluster file']]);
  assert.deepEqual(m.extra, []);
});

test('a frozen server: down with the reason, both upstream edges red, both LBs degraded, the API still answering', () => {
  const m = pageModel(serverDown());
  assert.equal(health(m, 'server:server2'), 'bad');
  assert.match(reason(m, 'server:server2'), /^host unreachable: no answer over SSH within 2 s; upstream down on lb1, lb2$/);
  assert.equal(health(m, 'lb:lb1'), 'warn');
  assert.match(reason(m, 'lb:lb1'), /upstream server2 down \(curl: \(28\)/);
  assert.deepEqual(m.edges.filter((e) => e.to === 'server:server2').map((e) => e.health), ['bad', 'bad']);
  assert.equal(health(m, 'clients'), 'ok');
  assert.equal(m.healthy, false);
});

test('the primary LB stopped: it is down, its upstreams unknown (not asked), the VIP on lb2 is healthy, lb2 carries the traffic', () => {
  const m = pageModel(primaryLbDown());
  assert.equal(health(m, 'lb:lb1'), 'bad');
  assert.equal(reason(m, 'lb:lb1'), 'nginx is not running');
  assert.equal(m.vipHolder, 'lb2');
  assert.equal(health(m, 'vip'), 'ok');
  assert.equal(m.elements.find((e) => e.id === 'lb:lb2')?.sub, 'nginx · VIP');
  assert.deepEqual(m.edges.filter((e) => e.from === 'lb:lb1').map((e) => e.health), ['unknown', 'unknown']);
  // The servers are fine: lb1's view of them was not asked, so it does not count against them.
  assert.equal(health(m, 'server:server1'), 'ok');
});

test('the VIP on no load balancer, and on two at once, are both down with the reason', () => {
  const none = pageModel(vipNowhere());
  assert.equal(health(none, 'vip'), 'bad');
  assert.equal(none.vipHolder, null);
  assert.equal(reason(none, 'vip'), 'held by no load balancer');
  const two = pageModel(splitBrain());
  assert.equal(health(two, 'vip'), 'bad');
  assert.match(reason(two, 'vip'), /lb1 and lb2 at once: split brain/);
});

test('the datastore stopped, an agent NotReady, the API down, a full pool: each is named on its element', () => {
  const ds = pageModel(datastoreDown());
  assert.equal(health(ds, 'datastore:lb1'), 'bad');
  assert.equal(reason(ds, 'datastore:lb1'), 'mariadb is not running');
  assert.ok(ds.edges.filter((e) => e.to === 'datastore:lb1').every((e) => e.health === 'bad'));

  const ag = pageModel(agentNotReady());
  assert.equal(health(ag, 'agent:agent1'), 'bad');
  assert.equal(reason(ag, 'agent:agent1'), 'node NotReady (NodeStatusUnknown: Kubelet stopped posting node status.)');

  const api = pageModel(apiDown());
  assert.equal(health(api, 'clients'), 'bad');
  assert.match(reason(api, 'clients'), /answers on no server: server1: connection refused/);
  // Without the API nothing is known about the nodes: unknown, not healthy, not down.
  assert.equal(health(api, 'agent:agent1'), 'unknown');

  const pool = pageModel(poolFull());
  assert.equal(pool.pools[0]?.health, 'bad');
  assert.deepEqual(pool.pending, ['web/wiki']);
});

test('a stale scheduled backup degrades the datastore (not down), with the age on the element and in the timeline', () => {
  const s = healthySnapshot();
  s.datastores[0]!.backup = { dir: '/var/backups/k8s-ha', newest: 'home-20261201T030000Z.tar', ageS: 3 * 86400, count: 7, staleAfterS: 2 * 86400, stale: true };
  const m = pageModel(s);
  assert.equal(health(m, 'datastore:lb1'), 'warn');
  assert.equal(reason(m, 'datastore:lb1'), 'answering; 5.1 MiB, 1834 kine rows; newest backup 3d old, 7 kept (stale after 2d)');
  assert.ok(m.elements.find((e) => e.id === 'datastore:lb1')?.facts.some(([k, v]) => k === 'scheduled backups' && v === 'newest backup 3d old, 7 kept in /var/backups/k8s-ha — STALE'));
  assert.ok(m.degraded.some((d) => d.includes('the newest scheduled backup is 3d old')));
  assert.deepEqual(changes(pageModel(healthySnapshot()), m).map((e) => e.text), ['datastore lb1 degraded: answering; 5.1 MiB, 1834 kine rows; newest backup 3d old, 7 kept (stale after 2d)']);
});

test('a section the page does not know (added to the status model later) is rendered as data, with no page change', () => {
  // The model now has a typed `galera` section; this one has another shape on purpose (a section the page knows nothing of).
  const s = { ...healthySnapshot(), certificates: { newest: '2026-12-01T03:00:00Z', ageHours: 9, stale: false }, upgrades: [{ host: 'db1', state: 'Synced', writer: true }, { host: 'db2', state: 'Donor/Desynced', writer: false }] } as unknown as StatusSnapshot;
  s.datastores[0] = { ...s.datastores[0]!, ...({ clusterSize: 3 } as object) };
  const m = pageModel(s);
  assert.deepEqual(m.extra.map((x) => x.title), ['Certificates', 'Upgrades']);
  assert.ok(m.elements.find((e) => e.id === 'datastore:lb1')?.facts.some(([k, v]) => k === 'Cluster size' && v === '3'));
  const html = liveParts(fresh(m)).main;
  assert.match(html, /<h2 id="h-x-certificates">Certificates<\/h2><dl class="kv"><dt>Newest<\/dt><dd>2026-12-01T03:00:00Z<\/dd><dt>Age hours<\/dt><dd>9<\/dd>/);
  assert.match(html, /<th scope="col">Host<\/th><th scope="col">State<\/th><th scope="col">Writer<\/th>.*<td>db2<\/td><td>Donor\/Desynced<\/td><td>false<\/td>/);
});

/** Two Galera data nodes behind both LBs (db1 on lb1, db2 on lb2), an arbitrator elsewhere. */
function galera(o: { db2State?: string; db2Status?: string; writers?: [string | null, string | null] } = {}) {
  const s = healthySnapshot();
  s.hosts[1]!.roles.push('datastore');
  s.datastores = [
    { host: 'lb1', active: true, reachable: true, version: '10.11.6-MariaDB', sizeBytes: 5_400_000, kineRows: 1834, galera: { size: 3, state: 'Synced', clusterStatus: 'Primary', ready: true } },
    { host: 'lb2', active: true, reachable: true, version: '10.11.6-MariaDB', sizeBytes: 5_400_000, kineRows: 1834, galera: { size: 3, state: o.db2State ?? 'Synced', clusterStatus: o.db2Status ?? 'Primary', ready: true } },
  ];
  const [w1, w2] = o.writers ?? ['lb1', 'lb1'];
  s.galera = { expectedSize: 3, writers: [{ lb: 'lb1', writer: w1 }, { lb: 'lb2', writer: w2 }] };
  return s;
}

test('Galera: each data node with its state, the writer marked, kine edges to the writer only, membership beside the tier', () => {
  const m = pageModel(galera());
  assert.equal(m.dbWriter, 'lb1');
  assert.deepEqual(m.elements.filter((e) => e.tier === 'datastore').map((e) => `${e.label}:${e.sub}:${e.health}`), ['lb1:Galera Synced · writer:ok', 'lb2:Galera Synced:ok']);
  assert.equal(m.notes.datastore, 'Galera: 3 of 3 members, writer lb1');
  assert.deepEqual(m.edges.filter((e) => e.to === 'datastore:lb2').map((e) => `${e.health}:${e.standby}`), ['unknown:true', 'unknown:true']);
  assert.ok(m.edges.filter((e) => e.to === 'datastore:lb1').every((e) => e.health === 'ok' && !e.standby));
  assert.match(liveParts(fresh(m)).main, /Datastore <tspan class="note">\(Galera: 3 of 3 members, writer lb1\)<\/tspan>/);

  const joining = pageModel(galera({ db2State: 'Joining' }));
  assert.equal(health(joining, 'datastore:lb2'), 'warn');
  assert.equal(reason(joining, 'datastore:lb2'), 'Galera node Joining, not Synced: takes no writes');
  const split = pageModel(galera({ db2Status: 'non-Primary' }));
  assert.equal(health(split, 'datastore:lb2'), 'bad');
  const two = pageModel(galera({ writers: ['lb1', 'lb2'] }));
  assert.equal(two.dbWriter, null);
  assert.equal(two.notes.datastore, 'Galera: 3 of 3 members, writers lb1 and lb2!');
  assert.ok(two.degraded.some((d) => /two writers/.test(d)));
  // The writer moving is told in the timeline.
  assert.deepEqual(changes(m, pageModel(galera({ writers: ['lb2', 'lb2'] }))).filter((e) => e.subject === 'writer').map((e) => e.text), ['datastore writer moved lb1 → lb2']);
});

test('the timeline: a server going down and coming back, named once each, upstreams per LB; reason texts that vary do not repeat an entry', () => {
  const h0 = pageModel(healthySnapshot('2026-12-01T12:03:40.000Z'));
  const d1 = pageModel(serverDown(healthySnapshot('2026-12-01T12:03:42.000Z')));
  const d2s = serverDown(healthySnapshot('2026-12-01T12:03:44.000Z'));
  d2s.loadBalancers[0]!.upstreams[1]!.detail = 'curl: (28) Operation timed out after 2003 milliseconds';
  const d2 = pageModel(d2s);
  const h3 = pageModel(healthySnapshot('2026-12-01T12:03:46.000Z'));
  assert.deepEqual(changes(null, h0), []);
  assert.deepEqual(changes(h0, h0), []);
  assert.deepEqual(
    changes(h0, d1).map((e) => `${e.at.slice(11, 19)} ${e.health} ${e.text}`),
    [
      '12:03:42 warn load balancer lb1 degraded: nginx running; upstream server2 down (curl: (28) Operation timed out after 2001 milliseconds)',
      '12:03:42 warn load balancer lb2 degraded: nginx running; upstream server2 down (curl: (28) Operation timed out after 2001 milliseconds)',
      '12:03:42 bad server server2 down: host unreachable: no answer over SSH within 2 s; upstream down on lb1, lb2',
      '12:03:42 bad lb1: upstream server2 down (curl: (28) Operation timed out after 2001 milliseconds)',
      '12:03:42 bad lb2: upstream server2 down (curl: (28) Operation timed out after 2001 milliseconds)',
    ],
  );
  assert.deepEqual(changes(d1, d2), []);
  assert.deepEqual(changes(d2, h3).map((e) => e.text), ['load balancer lb1 healthy again', 'load balancer lb2 healthy again', 'server server2 healthy again', 'lb1: upstream server2 up again', 'lb2: upstream server2 up again']);
});

test('the timeline: the VIP moving lb1 -> lb2 when the primary stops, then back', () => {
  const h0 = pageModel(healthySnapshot('2026-12-01T12:03:40.000Z'));
  const f = pageModel(primaryLbDown(healthySnapshot('2026-12-01T12:03:41.000Z')));
  const e = changes(h0, f);
  assert.equal(e[0]?.text, 'virtual IP 10.0.0.10 moved lb1 → lb2');
  assert.ok(e.some((x) => x.text === 'load balancer lb1 down: nginx is not running'));
  // lb1's upstreams became unknown (not asked): told by lb1's own entry, not once per upstream.
  assert.ok(!e.some((x) => x.subject.startsWith('lb:lb1>')));
  assert.equal(changes(f, h0)[0]?.text, 'virtual IP 10.0.0.10 moved lb2 → lb1');
  const gap = pageModel(vipNowhere());
  assert.equal(changes(h0, gap)[0]?.text, 'virtual IP 10.0.0.10 lost by lb1: held by no load balancer');
  // Through a snapshot where nobody held it: still told as a move from the last holder.
  assert.equal(changes(gap, f, 'lb1')[0]?.text, 'virtual IP 10.0.0.10 moved lb1 → lb2');
  assert.equal(changes(gap, h0, 'lb1')[0]?.text, 'virtual IP 10.0.0.10 held by lb1 again');
});

test('the timeline keeps the newest entries only', () => {
  const t = new Timeline(3);
  for (let i = 0; i < 5; i++) t.add({ at: `t${i}`, subject: 'x', health: 'ok', text: String(i) });
  assert.deepEqual(t.entries.map((e) => e.text), ['2', '3', '4']);
});

test('the document: the picture in two layouts, each box focusable with its health and reason for screen readers, no asset from elsewhere', () => {
  const m = pageModel(serverDown());
  const html = doc(fresh(m));
  assert.match(html, /<svg class="topo topo-w"/);
  assert.match(html, /<svg class="topo topo-n"/);
  assert.match(html, /<g class="el h-bad" id="w-server-server2" data-id="server:server2" tabindex="0" role="button" aria-label="server2: down\. host unreachable: no answer over SSH within 2 s; upstream down on lb1, lb2"/);
  assert.match(html, /<title>server2: down\. host unreachable/);
  // Colour is never the only sign: a word and an icon in each box.
  assert.match(html, /<text class="icon"[^>]*>✕<\/text><text class="label"[^>]*>server2<\/text><text class="sub"[^>]*>v1\.31\.4\+k3s1<\/text><text class="hw"[^>]*>down<\/text>/);
  assert.match(html, /<p id="summary" class="summary" role="status" aria-live="polite">home: degraded: 3 problems<\/p>/);
  assert.match(html, /<h2 id="h-problems">Problems \(3\)<\/h2><ul class="problems"><li class="h-bad">host server2 \(10\.0\.0\.22\) unreachable/);
  assert.match(html, /<meter min="0" max="6" value="1" aria-label="pool default: 1 of 6 addresses used">/);
  assert.match(html, /<html lang="en">/);
  assert.match(html, /<meta name="viewport" content="width=device-width, initial-scale=1">/);
  // Only its own paths: no scheme, no protocol-relative URL anywhere in an attribute.
  assert.deepEqual([...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((x) => x[1]).sort(), ['#h-problems', '/assets/page.css', '/assets/page.js', '/status.json']);
});

test('the document escapes what comes from hosts (an error text with markup is shown, never run)', () => {
  const s = healthySnapshot();
  s.hosts[2] = { ...s.hosts[2]!, reachable: false, error: '<script>alert(1)</script> & "quoted"' };
  const html = doc(fresh(pageModel(s)));
  assert.ok(!html.includes('<script>alert'));
  assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt; &amp; &quot;quoted&quot;/);
});

test('a stale view: the banner says since when and why, the summary says stale, the last picture stays', () => {
  const m = pageModel(healthySnapshot());
  const p = liveParts({ model: m, timeline: [], collector: { state: 'stale', why: 'The collector has not finished within 10 s.', since: '2026-12-01T12:04:00.000Z', refreshMs: 2000, timeoutMs: 10000 } });
  assert.equal(p.health, 'stale');
  assert.match(p.summary, /home: healthy: .* \(stale\)$/);
  assert.match(p.banner, /role="alert"><strong>Stale since <time datetime="2026-12-01T12:04:00\.000Z">12:04:00 UTC<\/time>: the picture below is the last snapshot that arrived\.<\/strong> The collector has not finished within 10 s\./);
  assert.match(p.main, /id="w-server-server1"/);
  const starting = liveParts({ model: null, timeline: [], collector: { state: 'starting', refreshMs: 2000, timeoutMs: 10000 } });
  assert.match(starting.banner, /Waiting for the first snapshot/);
  assert.match(starting.main, /Collecting the first snapshot/);
  assert.equal(liveParts(fresh(m)).banner, '');
});

test('the seed topology (one LB, no VIP): clients go straight to the LB; many agents wrap into rows', () => {
  const s = healthySnapshot();
  s.vip = null;
  s.loadBalancers = s.loadBalancers.slice(0, 1);
  s.hosts = s.hosts.filter((h) => h.name !== 'lb2');
  for (let i = 3; i <= 9; i++) {
    s.hosts.push({ name: `agent${i}`, address: `10.0.0.${30 + i}`, roles: ['agent'], reachable: true });
    s.kube.nodes.push({ name: `agent${i}`, ready: true, why: '', kubeletVersion: 'v1.31.4+k3s1', roles: [], simulated: true });
    s.kube.expected.push(`agent${i}`);
  }
  const m = pageModel(s);
  assert.ok(!m.elements.some((e) => e.tier === 'vip'));
  assert.ok(m.edges.some((e) => e.from === 'clients' && e.to === 'lb:lb1'));
  assert.equal(m.elements.find((e) => e.id === 'agent:agent3')?.reason, 'node Ready (simulated by kwok)');
  const html = liveParts(fresh(m)).main;
  const ys = (prefix: string) => new Set([...html.matchAll(new RegExp(`id="${prefix}-agent-agent\\d" [^>]*transform="translate\\(\\d+ (\\d+)\\)"`, 'g'))].map((x) => x[1]));
  assert.equal(ys('w').size, 3, 'nine agents in rows of four: three rows');
  assert.equal(ys('n').size, 5, 'rows of two on a phone: five rows');
});
