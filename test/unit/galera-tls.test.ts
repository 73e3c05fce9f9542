// Galera replication TLS (datastore.galera.tls): the in-process CA and its
// certificates as openssl sees them (verify, a mutual TLS handshake), the
// material kept in the state file (issued once, renewed when unfit, the CA key
// only in the state file), the drop-in and garbd options, and the phase:
// files 0600 owned by the daemon's user, the key masked in the plan, a
// restart when a certificate changes, and the refusal to switch TLS on a
// running cluster. The lab test (test/lab/galera.test.ts) runs with TLS on.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { certificateProblem, createCa, issueCertificate, privateKeyLines } from '../../src/util/x509.js';
import { StateFile } from '../../src/cluster/state.js';
import { galeraTls } from '../../src/cluster/galera-tls.js';
import { loadCluster, type Deployment } from '../../src/cluster/open.js';
import { GALERA_TLS_FILES, galeraProviderOptions, renderMariadbCnf } from '../../src/render/mariadb.js';
import { renderGarbDefaults } from '../../src/render/galera.js';
import { galeraPhase, type GaleraObserved } from '../../src/phases/galera.js';
import { runsTls } from '../../src/phases/galera-tls.js';
import type { GaleraNodeView } from '../../src/phases/galera-state.js';
import type { ObservedState } from '../../src/engine/desired.js';
import { noEvents } from '../../src/engine/events.js';
import type { RunContext } from '../../src/engine/phase.js';
import { Secret, SecretSet } from '../../src/util/secret.js';
import { stopped, synced } from '../support/galera-views.js';

function tmp(t: { after: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'k8s-ha-galera-tls-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('the CA and a member certificate: openssl verifies the chain for server and client use, and reads the IP and name', { skip: hasOpenssl ? false : 'openssl is not installed' }, (t) => {
  const d = tmp(t);
  const ca = createCa({ cn: 'k8s-ha Galera CA (lab)', org: 'lab', days: 7300 });
  const m = issueCertificate(ca, { cn: 'infra1', org: 'lab', ips: ['10.0.0.10'], dns: ['infra1'], days: 1825 });
  writeFileSync(join(d, 'ca.pem'), ca.certPem);
  writeFileSync(join(d, 'm.pem'), m.certPem);
  for (const purpose of ['sslserver', 'sslclient']) {
    assert.match(execFileSync('openssl', ['verify', '-CAfile', join(d, 'ca.pem'), '-purpose', purpose, join(d, 'm.pem')]).toString(), /: OK/);
  }
  const text = execFileSync('openssl', ['x509', '-in', join(d, 'm.pem'), '-noout', '-text']).toString();
  assert.match(text, /IP Address:10\.0\.0\.10, DNS:infra1/);
  assert.match(text, /CA:FALSE/);
  assert.match(execFileSync('openssl', ['x509', '-in', join(d, 'ca.pem'), '-noout', '-text']).toString(), /CA:TRUE/);
  // Another CA's member does not verify.
  const other = issueCertificate(createCa({ cn: 'other', org: 'x', days: 10 }), { cn: 'x', org: 'x', ips: ['10.0.0.10'], days: 10 });
  writeFileSync(join(d, 'o.pem'), other.certPem);
  assert.throws(() => execFileSync('openssl', ['verify', '-CAfile', join(d, 'ca.pem'), join(d, 'o.pem')], { stdio: 'pipe' }));
});

test('two members complete a mutual TLS handshake with openssl s_server / s_client, each checking the other against the CA', { skip: hasOpenssl ? false : 'openssl is not installed', timeout: 20_000 }, async (t) => {
  const d = tmp(t);
  const ca = createCa({ cn: 'CA', org: 'lab', days: 30 });
  const a = issueCertificate(ca, { cn: 'a', org: 'lab', ips: ['127.0.0.1'], days: 30 });
  const b = issueCertificate(ca, { cn: 'b', org: 'lab', ips: ['127.0.0.1'], days: 30 });
  for (const [n, v] of Object.entries({ 'ca.pem': ca.certPem, 'a.pem': a.certPem, 'a-key.pem': a.keyPem, 'b.pem': b.certPem, 'b-key.pem': b.keyPem })) writeFileSync(join(d, n), v);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', join(d, 'a.pem'), '-key', join(d, 'a-key.pem'), '-CAfile', join(d, 'ca.pem'), '-Verify', '1', '-verify_return_error', '-naccept', '1'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => server.kill());
  let out = '';
  server.stdout.on('data', (c: Buffer) => (out += c.toString()));
  server.stderr.on('data', (c: Buffer) => (out += c.toString()));
  await new Promise((r) => setTimeout(r, 700));
  const r = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', join(d, 'b.pem'), '-key', join(d, 'b-key.pem'), '-CAfile', join(d, 'ca.pem'), '-verify_return_error', '-brief'], { input: 'hello\n', timeout: 10_000 });
  const client = r.stdout.toString() + r.stderr.toString();
  await new Promise((res) => setTimeout(res, 300));
  assert.match(client, /Verification: OK/, client);
  assert.match(client, /Peer certificate: O = lab, CN = a/, client);
  assert.match(out, /depth=0 O = lab, CN = b/, `the server checked the client's certificate: ${out}`);
});

test('certificateProblem: another address, another CA, another key and near expiry are each found', () => {
  const ca = createCa({ cn: 'CA', org: 'lab', days: 100 });
  const now = new Date('2027-01-01T00:00:00Z');
  const m = issueCertificate(ca, { cn: 'n', org: 'lab', ips: ['10.0.0.10'], days: 60, now });
  const ok = { certPem: m.certPem, keyPem: m.keyPem, caPem: ca.certPem, ip: '10.0.0.10', renewBeforeDays: 30, now };
  assert.equal(certificateProblem(ok), null);
  assert.equal(certificateProblem({ ...ok, ip: '10.0.0.11' }), 'does not name 10.0.0.11');
  assert.equal(certificateProblem({ ...ok, caPem: createCa({ cn: 'x', org: 'x', days: 10 }).certPem }), 'not signed by the CA');
  assert.equal(certificateProblem({ ...ok, keyPem: issueCertificate(ca, { cn: 'o', org: 'lab', days: 5 }).keyPem }), 'does not match its key');
  assert.match(certificateProblem({ ...ok, now: new Date('2027-02-15T00:00:00Z') })!, /^expires 2027-03-02/);
  assert.equal(new X509Certificate(m.certPem).issuer, 'O=lab\nCN=CA');
});

const cluster = () => {
  const { cluster } = loadCluster('examples/ha-galera.yaml', { HOME: '/root' });
  cluster.datastore.galera!.tls = true;
  return cluster;
};

test('the state file keeps one CA and a certificate per data node and garbd: issued once, the same on the next run, re-issued when a member moves; the CA key is a secret of the state file only', async (t) => {
  const p = join(tmp(t), 'c.state.yaml');
  const c = cluster();
  const s1 = await StateFile.load(p, c.name);
  const m1 = galeraTls(c, s1)!;
  assert.deepEqual([...m1.members.keys()].sort(), ['infra1', 'infra2', 'w1']);
  await s1.save();
  assert.doesNotMatch(readFileSync(p, 'utf8'), /BEGIN/, 'nothing issued is kept before an apply starts');
  s1.keepGenerated();
  await s1.save();
  const saved = readFileSync(p, 'utf8');
  assert.match(saved, /galeraCaKey/);
  const s2 = await StateFile.load(p, c.name);
  const m2 = galeraTls(c, s2)!;
  assert.equal(m2.caCert, m1.caCert);
  for (const [n, m] of m1.members) assert.equal(m2.members.get(n)!.cert, m.cert, `${n}: the same certificate`);
  assert.ok(s2.allSecrets().some((x) => x.reveal().includes('BEGIN PRIVATE KEY')), 'the keys are secrets (masked in every output)');
  const moved = cluster();
  moved.hosts.find((h) => h.name === 'infra2')!.address = '10.20.0.99';
  const m3 = galeraTls(moved, s2)!;
  assert.notEqual(m3.members.get('infra2')!.cert, m1.members.get('infra2')!.cert, 'a new certificate for the new address');
  assert.equal(m3.members.get('infra1')!.cert, m1.members.get('infra1')!.cert);
  assert.equal(new X509Certificate(m3.members.get('infra2')!.cert).checkIP('10.20.0.99'), '10.20.0.99');
  const off = cluster();
  off.datastore.galera!.tls = false;
  assert.equal(galeraTls(off, s2), undefined);
});

test('the drop-in and garbd options carry socket.ssl with the three files, and [sst] asks for VERIFY_CA; without TLS neither appears', () => {
  const base = { bindAddress: '10.0.0.10', port: 3307, maxConnections: 151, hasSnapshotIsolationSetting: true };
  const galera = { clusterName: 'lab', nodeName: 'infra1', nodeAddress: '10.0.0.10', members: ['10.0.0.10', '10.0.0.11'], suspectTimeoutMs: 2000 };
  const cnf = renderMariadbCnf({ ...base, galera: { ...galera, tls: GALERA_TLS_FILES } });
  assert.match(cnf, /^wsrep_provider_options = ".*; socket\.ssl=YES; socket\.ssl_ca=\/etc\/k8s-ha\/galera-tls\/ca\.pem; socket\.ssl_cert=\/etc\/k8s-ha\/galera-tls\/member\.pem; socket\.ssl_key=\/etc\/k8s-ha\/galera-tls\/member-key\.pem"$/m);
  const sst = cnf.slice(cnf.indexOf('\n[sst]\n'));
  assert.ok(cnf.indexOf('\n[sst]\n') > cnf.indexOf('wsrep_provider_options'), '[sst] comes after every [mysqld] line');
  assert.match(sst, /^ssl-mode = VERIFY_CA$/m);
  assert.match(sst, /^ssl-ca = \/etc\/k8s-ha\/galera-tls\/ca\.pem$/m);
  assert.match(sst, /^ssl-cert = \/etc\/k8s-ha\/galera-tls\/member\.pem$/m);
  assert.match(sst, /^ssl-key = \/etc\/k8s-ha\/galera-tls\/member-key\.pem$/m);
  const plain = renderMariadbCnf({ ...base, galera });
  assert.doesNotMatch(plain, /socket\.ssl|\[sst\]/);
  assert.match(renderGarbDefaults({ clusterName: 'lab', nodes: ['10.0.0.10'], suspectTimeoutMs: 2000, tls: GALERA_TLS_FILES }), /^GALERA_OPTIONS=".*socket\.ssl=YES; socket\.ssl_ca=\/etc\/k8s-ha\/galera-tls\/ca\.pem;.*"$/m);
  assert.equal(galeraProviderOptions(2000, GALERA_TLS_FILES).split('; ').filter((o) => o.startsWith('socket.')).length, 4);
});

test('runsTls reads wsrep_provider_options as MariaDB 10.11 prints it', () => {
  assert.equal(runsTls('socket.checksum = 2; socket.recv_buf_size = auto; socket.ssl = YES; socket.ssl_ca = /etc/k8s-ha/galera-tls/ca.pem; socket.ssl_cipher = ; socket.ssl_reload = 1'), true);
  assert.equal(runsTls('socket.checksum = 2; socket.ssl = NO; socket.ssl_reload = 1'), false);
  assert.equal(runsTls('base_port = 4567; socket.checksum = 2'), false);
  assert.equal(runsTls(undefined), undefined);
});

// --- the phase -------------------------------------------------------------

async function ctx(t: { after: (f: () => void) => void }, tls = true): Promise<RunContext<Deployment>> {
  const c = cluster();
  c.datastore.galera!.tls = tls;
  const state = await StateFile.load(join(tmp(t), 's.yaml'), c.name);
  const m = galeraTls(c, state);
  const d: Deployment = { spec: c, secrets: { k3sToken: new Secret('t'), datastorePassword: new Secret('p'), vrrpPass: new Secret('v'), ...(m ? { galeraTls: m } : {}) }, file: 'examples/ha-galera.yaml' };
  return { cluster: d, secrets: new SecretSet(state.allSecrets()), facts: new Map(), host: () => Promise.reject(new Error('no host in this test')), events: noEvents };
}

function observed(host: string, files: Record<string, { content: string; mode?: number; owner?: string }> = {}, active = false): ObservedState {
  return {
    host,
    packages: new Map(['mariadb-server', 'galera-4', 'mariadb-backup', 'socat', 'openssl', 'galera-arbitrator-4'].map((p) => [p, '1'])),
    files: new Map(Object.entries(files).map(([p, f]) => [p, { content: f.content, mode: f.mode ?? 0o644, owner: f.owner ?? 'root', group: f.owner ?? 'root' }])),
    services: new Map([
      ['mariadb', { active, enabled: false, exists: true }],
      ['mariadb.socket', { active: false, enabled: false, exists: true }],
      ['k8s-ha-galera-check.socket', { active: true, enabled: true, exists: true }],
      ['garb', { active: true, enabled: true, exists: true }],
    ]),
    pending: new Map(),
  };
}
const server = (providerOptions: string) => ({
  version: '10.11.19-MariaDB',
  variables: new Map([['AUTO_INCREMENT_INCREMENT', '1'], ['AUTO_INCREMENT_OFFSET', '1'], ['WSREP_AUTO_INCREMENT_CONTROL', 'OFF'], ['WSREP_ON', 'ON'], ['WSREP_PROVIDER_OPTIONS', providerOptions]]),
  databaseExists: true,
  accounts: ['10.20.0.31', '10.20.0.32'].map((host) => ({ host, passwordMatches: true, ssl: 'NONE' })),
  granted: new Set(['10.20.0.31', '10.20.0.32']),
});
const node = (views: GaleraNodeView[], st: ObservedState, srv: ReturnType<typeof server> | null = null): GaleraObserved => ({ role: 'node', state: st, packageVersion: '1:10.11.19-0+deb12u1', server: srv, views });

test('the phase writes the CA, certificate and key 0600 owned by mysql (garbd: nobody), masks the key in the plan, and installs socat and openssl', async (t) => {
  const c = await ctx(t);
  const views = [stopped('infra1'), stopped('infra2')];
  const st = observed('infra1');
  st.packages.delete('socat');
  const changes = galeraPhase.diff(c, 'infra1', node(views, st), new Map());
  const file = (p: string) => changes.find((ch) => 'file' in ch.target && ch.target.file === p);
  for (const p of Object.values(GALERA_TLS_FILES)) assert.ok(file(p), `${p} is written`);
  assert.ok(changes.some((ch) => 'packages' in ch.target && ch.target.packages.includes('socat')));
  const key = c.cluster.secrets.galeraTls!.members.get('infra1')!.key.reveal();
  const shown = JSON.stringify(changes.map((ch) => [ch.summary, ch.before, ch.after, ch.detail]));
  for (const line of privateKeyLines(key)) assert.ok(!shown.includes(line), 'no line of the key in the plan');
  assert.ok(shown.includes('BEGIN CERTIFICATE'), 'the certificates are shown (public)');
  // Converged files with the wrong owner: fixed to mysql 0600.
  const rendered: Record<string, { content: string; mode?: number; owner?: string }> = {};
  const m = c.cluster.secrets.galeraTls!;
  rendered[GALERA_TLS_FILES.caFile] = { content: m.caCert, mode: 0o644 };
  const fix = galeraPhase.diff(c, 'infra1', node(views, observed('infra1', rendered)), new Map());
  assert.ok(fix.some((ch) => ch.summary.startsWith(`fix mode/owner of ${GALERA_TLS_FILES.caFile} (0644 root:root -> 0600 mysql:mysql)`)), fix.map((x) => x.summary).join('\n'));
  const garb = galeraPhase.diff(c, 'w1', { role: 'arbitrator', state: observed('w1', { [GALERA_TLS_FILES.caFile]: { content: m.caCert, mode: 0o600, owner: 'root' } }), views }, new Map());
  assert.ok(garb.some((ch) => ch.summary.includes('-> 0600 nobody:nogroup')), garb.map((x) => x.summary).join('\n'));
  assert.ok(garb.some((ch) => ch.summary.includes('restart garb')));
});

test('a renewed certificate restarts the data nodes one at a time; TLS turned off removes the files', async (t) => {
  const c = await ctx(t);
  const views = [synced('infra1'), synced('infra2')];
  const first = galeraPhase.diff(c, 'infra1', node(views, observed('infra1')), new Map());
  const files: Record<string, { content: string; mode?: number; owner?: string }> = {};
  for (const ch of first) if (ch.action === 'create' && 'file' in ch.target && typeof ch.after === 'string') files[ch.target.file] = { content: ch.after, mode: ch.target.file.startsWith('/usr/local/sbin/') ? 0o755 : ch.target.file.startsWith('/etc/k8s-ha/') ? 0o600 : 0o644, owner: ch.target.file.startsWith('/etc/k8s-ha/') ? 'mysql' : 'root' };
  // The key as written (the plan's `after` masks it).
  files[GALERA_TLS_FILES.keyFile] = { content: c.cluster.secrets.galeraTls!.members.get('infra1')!.key.reveal(), mode: 0o600, owner: 'mysql' };
  const tlsOn = 'socket.ssl = YES; socket.ssl_ca = /etc/k8s-ha/galera-tls/ca.pem';
  assert.deepEqual(galeraPhase.diff(c, 'infra1', node(views, observed('infra1', files, true), server(tlsOn)), new Map()).map((x) => x.summary), [], 'converged');
  const renewed = { ...files, [GALERA_TLS_FILES.certFile]: { content: 'old certificate\n', mode: 0o600, owner: 'mysql' } };
  const r = galeraPhase.diff(c, 'infra1', node(views, observed('infra1', renewed, true), server(tlsOn)), new Map()).map((x) => x.summary);
  assert.ok(r.some((s) => s.startsWith(`restart mariadb (${GALERA_TLS_FILES.certFile} changed; one data node at a time`)), r.join('\n'));
  const off = await ctx(t, false);
  const removed = galeraPhase.diff(off, 'infra1', node([stopped('infra1'), stopped('infra2')], observed('infra1', files)), new Map()).map((x) => x.summary);
  for (const p of Object.values(GALERA_TLS_FILES)) assert.ok(removed.includes(`remove ${p}`), removed.join('\n'));
});

test('preflight refuses turning TLS on or off while data nodes run, and a running CA other than the state file\'s, with the way out; stopped nodes are not refused', async (t) => {
  const on = await ctx(t);
  const views = [synced('infra1'), synced('infra2')];
  const plain = 'socket.checksum = 2; socket.ssl = NO';
  const obs = new Map<string, GaleraObserved>([
    ['infra1', node(views, observed('infra1', {}, true), server(plain))],
    ['infra2', node(views, observed('infra2', {}, true), server(plain))],
  ]);
  const p = galeraPhase.preflight!(on, obs);
  const e = p.find((x) => x.path === 'datastore.galera.tls.enabled');
  assert.ok(e && e.severity === 'error', JSON.stringify(p));
  assert.match(e.message, /is true but infra1, infra2 run Galera without TLS/);
  assert.match(e.hint!, /set it back to false, or .*stop MariaDB on every data node \(`systemctl stop mariadb` on infra1, infra2;.*then run apply/);
  const off = await ctx(t, false);
  const tlsObs = new Map<string, GaleraObserved>([['infra1', node(views, observed('infra1', {}, true), server('socket.ssl = YES'))]]);
  assert.match(galeraPhase.preflight!(off, tlsObs).find((x) => x.path === 'datastore.galera.tls.enabled')!.message, /is false but infra1 runs Galera with TLS/);
  const otherCa = new Map<string, GaleraObserved>([['infra1', node(views, observed('infra1', { [GALERA_TLS_FILES.caFile]: { content: 'another CA\n' } }, true), server('socket.ssl = YES'))]]);
  assert.match(galeraPhase.preflight!(on, otherCa).find((x) => x.path === 'datastore.galera.tls')!.message, /infra1 runs Galera TLS with another CA than the state file's/);
  const down = new Map<string, GaleraObserved>([['infra1', node([stopped('infra1'), stopped('infra2')], observed('infra1'))]]);
  assert.deepEqual(galeraPhase.preflight!(on, down).filter((x) => x.path.startsWith('datastore.galera.tls')), [], 'every node stopped: the way out is allowed');
});

test('a node mid-join (mariadb activating) is waited for, not restarted: a restart would cut its state transfer off', async (t) => {
  const c = await ctx(t, false);
  const joining: GaleraNodeView = { ...stopped('infra2'), unit: 'activating' };
  const s = galeraPhase.diff(c, 'infra2', node([synced('infra1'), joining], observed('infra2')), new Map()).map((x) => x.summary);
  assert.ok(s.includes('wait for infra2 to finish joining (mariadb is starting: a state transfer under way)'), s.join('\n'));
  assert.ok(!s.some((x) => /^(start|restart) mariadb/.test(x)), s.join('\n'));
  const down = galeraPhase.diff(c, 'infra2', node([synced('infra1'), { ...stopped('infra2'), unit: 'failed' }], observed('infra2')), new Map()).map((x) => x.summary);
  assert.ok(down.some((x) => x.startsWith('start mariadb: rejoin the primary component of infra1')), down.join('\n'));
});
