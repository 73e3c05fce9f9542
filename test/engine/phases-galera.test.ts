// The Galera phase's decisions from given observations (diff and preflight
// are pure): one bootstrap on the chosen node only, joins elsewhere, a rolling
// restart when the drop-in changes, nothing when converged, and preflight's
// refusals. The lab test (test/lab/galera.test.ts) runs the same on real nodes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ObservedState } from '../../src/engine/desired.js';
import { noEvents } from '../../src/engine/events.js';
import type { RunContext } from '../../src/engine/phase.js';
import { loadCluster, type Deployment } from '../../src/cluster/open.js';
import { galeraPhase, type GaleraObserved } from '../../src/phases/galera.js';
import type { GaleraNodeView } from '../../src/phases/galera-state.js';
import { MARIADB_CNF_PATH } from '../../src/render/mariadb.js';
import { Secret, SecretSet } from '../../src/util/secret.js';
import { stopped, synced } from '../support/galera-views.js';

function ctx(edit: (d: Deployment) => void = () => {}): RunContext<Deployment> {
  const { cluster } = loadCluster('examples/ha-galera.yaml', { HOME: '/root' });
  // The example runs replication over TLS; the phase's TLS files have their own test (test/unit/galera-tls.test.ts).
  cluster.datastore.galera!.tls = false;
  const d: Deployment = { spec: cluster, secrets: { k3sToken: new Secret('t'), datastorePassword: new Secret('p'), vrrpPass: new Secret('v') }, file: 'examples/ha-galera.yaml' };
  edit(d);
  return { cluster: d, secrets: new SecretSet(), facts: new Map(), host: () => Promise.reject(new Error('no host in this test')), events: noEvents };
}

function state(files: Record<string, string> = {}, mariadb = { active: false, enabled: false }, host = 'infra1'): ObservedState {
  return {
    host,
    packages: new Map([['mariadb-server', '1:10.11.6-0+deb12u1'], ['galera-4', '26.4'], ['mariadb-backup', '1:10.11.6'], ['galera-arbitrator-4', '26.4']]),
    files: new Map(Object.entries(files).map(([p, c]) => [p, { content: c, mode: p.startsWith('/usr/local/sbin/') ? 0o755 : 0o644, owner: 'root', group: 'root' }])),
    services: new Map([
      ['mariadb', { ...mariadb, exists: true }],
      ['mariadb.socket', { active: false, enabled: false, exists: true }],
      ['k8s-ha-galera-check.socket', { active: true, enabled: true, exists: true }],
      ['garb', { active: true, enabled: true, exists: true }],
    ]),
    pending: new Map(),
  };
}


/** The k3s database and the servers' accounts as the phase left them. */
const accounts = {
  version: '10.11.6-MariaDB',
  variables: new Map([['AUTO_INCREMENT_INCREMENT', '1'], ['AUTO_INCREMENT_OFFSET', '1'], ['WSREP_AUTO_INCREMENT_CONTROL', 'OFF'], ['WSREP_ON', 'ON']]),
  databaseExists: true,
  accounts: ['10.20.0.31', '10.20.0.32'].map((host) => ({ host, passwordMatches: true, ssl: 'NONE' })),
  granted: new Set(['10.20.0.31', '10.20.0.32']),
};
const node = (views: GaleraNodeView[], st = state(), server: typeof accounts | null = null): GaleraObserved => ({ role: 'node', state: st, packageVersion: '1:10.11.6-0+deb12u1', server, views });
const summaries = (c: RunContext<Deployment>, host: string, o: GaleraObserved) => galeraPhase.diff(c, host, o, new Map([[host, o]])).map((ch) => ch.summary);

test('bare data nodes: the preferred writer bootstraps a new cluster, the other joins it, nobody else bootstraps', () => {
  const c = ctx();
  const views = [stopped('infra1', null), stopped('infra2', null)];
  const a = summaries(c, 'infra1', node(views));
  const b = summaries(c, 'infra2', node(views));
  assert.ok(a.includes('bootstrap a new Galera cluster from infra1 (no data node holds data)'), a.join('\n'));
  assert.ok(b.some((s) => s.startsWith('join the new cluster once infra1 is up')), b.join('\n'));
  assert.ok(![...a, ...b].some((s) => s.includes('bootstrap') && !s.startsWith('bootstrap a new Galera cluster from infra1')), 'one bootstrap');
  assert.ok(a.some((s) => s.startsWith('create database k3s and accounts')), 'the accounts on the bootstrap node, replicated');
  assert.ok(!b.some((s) => s.includes('accounts')));
});

test('after a full outage the most advanced node bootstraps even when it is not the preferred writer', () => {
  const c = ctx();
  const views = [stopped('infra1', 40), stopped('infra2', 52)];
  const a = summaries(c, 'infra1', node(views));
  const b = summaries(c, 'infra2', node(views));
  assert.ok(b.some((s) => s.startsWith('recover after a full outage: bootstrap from infra2, the most advanced node (seqno 52; infra1 40, infra2 52)')), b.join('\n'));
  assert.ok(a.some((s) => s.startsWith('rejoin after the full outage once infra2 is up')), a.join('\n'));
});

test('a converged node changes nothing; a changed drop-in restarts it one node at a time; a stopped node rejoins', () => {
  const c = ctx();
  const views = [synced('infra1'), synced('infra2')];
  // The desired files as the phase renders them: take them from a first diff's file changes.
  const first = galeraPhase.diff(c, 'infra1', node(views), new Map());
  assert.ok(first.some((ch) => ch.action === 'create' && 'file' in ch.target && ch.target.file === MARIADB_CNF_PATH));
  const rendered = new Map<string, string>();
  for (const ch of first) if (ch.action === 'create' && 'file' in ch.target && typeof ch.after === 'string') rendered.set(ch.target.file, ch.after);
  const converged = state(Object.fromEntries(rendered), { active: true, enabled: false });
  assert.deepEqual(summaries(c, 'infra1', node(views, converged, accounts)), []);
  assert.ok(!summaries(c, 'infra2', node(views, converged)).some((x) => x.includes('accounts')), 'the accounts are converged on the first synced node only');
  const edited = state({ ...Object.fromEntries(rendered), [MARIADB_CNF_PATH]: 'old\n' }, { active: true, enabled: false });
  assert.ok(summaries(c, 'infra1', node(views, edited)).some((s) => s.startsWith('restart mariadb (/etc/mysql/mariadb.conf.d/60-k8s-ha.cnf changed; one data node at a time')));
  const down = [synced('infra1'), stopped('infra2', 80)];
  assert.ok(summaries(c, 'infra2', node(down, converged)).some((s) => s.startsWith('start mariadb: rejoin the primary component of infra1')));
  const enabled = state(Object.fromEntries(rendered), { active: true, enabled: true });
  assert.ok(summaries(c, 'infra1', node(views, enabled)).some((s) => s.startsWith('disable mariadb at boot')));
});

test('preflight refuses Galera unless experimental is set, and refuses a bootstrap it cannot decide safely', () => {
  const off = ctx((d) => {
    d.spec.datastore.galera!.experimental = false;
  });
  const p = galeraPhase.preflight!(off, new Map([['infra1', node([stopped('infra1', null), stopped('infra2', null)])]]));
  assert.ok(p.some((x) => x.severity === 'error' && x.path === 'datastore.galera.experimental'), JSON.stringify(p));
  const on = ctx();
  const blocked = galeraPhase.preflight!(on, new Map([['infra1', node([stopped('infra1', 40), { ...stopped('infra2', null), reachable: false }])]]));
  assert.ok(blocked.some((x) => x.severity === 'error' && /infra2 cannot be read/.test(x.message)), JSON.stringify(blocked));
  assert.deepEqual(galeraPhase.preflight!(on, new Map([['infra1', node([stopped('infra1', null), stopped('infra2', null)])]])), []);
});
