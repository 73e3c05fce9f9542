import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RenderInputError, renderHaproxyCfg, type HaproxyLbInput } from '../../src/render/index.js';
import { galeraProviderOptions, renderMariadbCnf } from '../../src/render/mariadb.js';
import { renderGaleraCheckScript, renderGaleraCheckSocket, renderGarbDefaults } from '../../src/render/galera.js';
import { parseWriterTable, renderVipHoldScript } from '../../src/render/haproxy-datastore.js';
import { renderKeepalivedConf } from '../../src/render/keepalived.js';
import { run, which, withTempFile } from '../fixtures/render/helpers.js';
import { galeraLbKeepalived } from '../fixtures/render/keepalived-galera-lb.js';

const galeraCnf = () =>
  renderMariadbCnf({
    bindAddress: '10.0.0.10',
    port: 3307,
    maxConnections: 250,
    hasSnapshotIsolationSetting: true,
    proxyProtocolNetworks: ['10.0.0.11', '10.0.0.10', '10.0.0.5'],
    galera: { clusterName: 'lab', nodeName: 'infra1', nodeAddress: '10.0.0.10', members: ['10.0.0.51', '10.0.0.11', '10.0.0.10'], suspectTimeoutMs: 2000 },
  });

test('a Galera node\'s drop-in states every setting kine needs and the wsrep ones', () => {
  const cnf = galeraCnf();
  for (const line of [
    'auto_increment_increment = 1',
    'auto_increment_offset = 1',
    'innodb_snapshot_isolation = OFF',
    'binlog_format = ROW',
    'innodb_autoinc_lock_mode = 2',
    'wsrep_on = ON',
    'wsrep_auto_increment_control = OFF',
    'wsrep_sst_method = mariabackup',
    'wsrep_cluster_name = lab',
    'wsrep_node_address = 10.0.0.10',
    'wsrep_cluster_address = gcomm://10.0.0.10:4567,10.0.0.11:4567,10.0.0.51:4567',
    'proxy_protocol_networks = 10.0.0.10,10.0.0.11,10.0.0.5',
    'port = 3307',
  ]) {
    assert.ok(cnf.split('\n').includes(line), `missing: ${line}\n${cnf}`);
  }
  assert.match(cnf, /^wsrep_provider_options = "evs\.keepalive_period=PT0\.5S; evs\.inactive_check_period=PT0\.5S; evs\.suspect_timeout=PT2S; evs\.inactive_timeout=PT4S; evs\.install_timeout=PT4S"$/m);
});

test('mariadbd\'s own option parser accepts the Galera drop-in', (t) => {
  const mariadbd = which('mariadbd');
  if (mariadbd === undefined) return t.skip('mariadbd not installed');
  withTempFile('60-k8s-ha.cnf', galeraCnf(), (path) => {
    const r = run(mariadbd, [`--defaults-file=${path}`, '--user=mysql', '--help', '--verbose']);
    assert.equal(r.status, 0, r.stderr);
  });
});

test('a Galera drop-in without this node among the members, or with one member, is refused', () => {
  const base = { bindAddress: '10.0.0.10', port: 3307, maxConnections: 250, hasSnapshotIsolationSetting: false };
  assert.throws(() => renderMariadbCnf({ ...base, galera: { clusterName: 'lab', nodeName: 'a', nodeAddress: '10.0.0.10', members: ['10.0.0.11', '10.0.0.12'], suspectTimeoutMs: 2000 } }), RenderInputError);
  assert.throws(() => renderMariadbCnf({ ...base, galera: { clusterName: 'lab', nodeName: 'a', nodeAddress: '10.0.0.10', members: ['10.0.0.10'], suspectTimeoutMs: 2000 } }), RenderInputError);
});

test('failure detection scales with the suspect timeout and never goes below Galera\'s ordering of timeouts', () => {
  assert.equal(galeraProviderOptions(5000), 'evs.keepalive_period=PT1S; evs.inactive_check_period=PT0.5S; evs.suspect_timeout=PT5S; evs.inactive_timeout=PT10S; evs.install_timeout=PT10S');
});

const lbBase: HaproxyLbInput = {
  listenPort: 6443,
  servers: [{ name: 'server1', address: '10.0.0.21', port: 6443 }],
  connectTimeoutMs: 1000,
  idleTimeoutMs: 3_600_000,
  healthCheck: { path: '/ping', intervalMs: 500, fall: 2, rise: 2 },
  datastore: {
    listenPort: 3306,
    nodes: [
      { name: 'infra2', address: '10.0.0.11', port: 3307 },
      { name: 'infra1', address: '10.0.0.10', port: 3307 },
    ],
    checkPort: 9200,
    intervalMs: 500,
    fall: 2,
    rise: 2,
    holdMs: 1500,
    proxyProtocol: true,
    peers: { self: 'infra1', all: [{ name: 'infra2', address: '10.0.0.11' }, { name: 'infra1', address: '10.0.0.10' }] },
  },
};

test('HAProxy sends every datastore connection to one node: the first listed, the others backups, the writer recorded in a one-entry table shared by the peers', () => {
  const cfg = renderHaproxyCfg(lbBase);
  // Ids by sorted name (the same on both load balancers), the order as given.
  assert.match(cfg, /^\s+server infra2 10\.0\.0\.11:3307 id 2$/m, 'the preferred writer is the only non-backup server, in the given order');
  assert.match(cfg, /^\s+server infra1 10\.0\.0\.10:3307 id 1 backup$/m);
  assert.match(cfg, /^backend k3s_datastore_writer\n(\s+#.*\n)*\s+stick-table type integer size 1 store gpt0 peers k8s_ha_lbs$/m);
  assert.match(cfg, /^\s+tcp-response content sc-set-gpt0\(2\) srv_id$/m, 'the node that answers is recorded');
  assert.match(cfg, /^\s+use-server infra2 if writer_2 up_2$/m, 'new connections stay on the recorded writer while it is up');
  assert.doesNotMatch(cfg, /^\s+stick on /m, 'HAProxy drops a stick entry on a failed connect: not used');
  assert.match(cfg, /^backend k3s_datastore\n(.*\n)*?\s+no option redispatch$/m, 'a retry never lands on another node behind the hold-down');
  assert.match(cfg, /^\s+acl hold_running int\(1\),table_idle\(k3s_datastore_hold,0\) -m int lt 1500$/m);
  assert.match(cfg, /^\s+tcp-request content reject if writer_2 !up_2 held_2 hold_running \|\| writer_1 !up_1 held_1 hold_running \|\| held_vip hold_running$/m, 'AND binds tighter than ||: each term bounded');
  assert.match(cfg, /default-server check port 9200 inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions send-proxy-v2$/m);
  assert.match(cfg, /^\s+localpeer infra1$/m);
  assert.match(cfg, /^\s+peer infra1 10\.0\.0\.10:10000\n\s+peer infra2 10\.0\.0\.11:10000$/m);
  const backend = cfg.slice(cfg.indexOf('backend k3s_datastore\n'));
  assert.doesNotMatch(backend, /^\s+balance /m, 'no balancing among data nodes');
});

test('the hold-down can be turned off, and the peers port is configurable', () => {
  const cfg = renderHaproxyCfg({ ...lbBase, datastore: { ...lbBase.datastore!, holdMs: 0, peers: { ...lbBase.datastore!.peers, port: 10010 } } });
  assert.doesNotMatch(cfg, /tcp-request content reject/);
  assert.match(cfg, /^\s+use-server infra2 if writer_2 up_2$/m);
  assert.match(cfg, /^\s+peer infra1 10\.0\.0\.10:10010$/m);
  assert.throws(() => renderHaproxyCfg({ ...lbBase, datastore: { ...lbBase.datastore!, holdMs: 120_000 } }), RenderInputError);
});

test('haproxy -c accepts the config with the datastore listener', (t) => {
  const haproxy = which('haproxy');
  if (haproxy === undefined) return t.skip('haproxy not installed');
  withTempFile('haproxy.cfg', renderHaproxyCfg(lbBase), (path) => {
    const r = run(haproxy, ['-c', '-f', path]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /\[(WARNING|ALERT)\]/, r.stdout + r.stderr);
  });
});

test('a datastore listener on the API port, one node, or a self that is not a peer is refused', () => {
  assert.throws(() => renderHaproxyCfg({ ...lbBase, datastore: { ...lbBase.datastore!, listenPort: 6443 } }), RenderInputError);
  assert.throws(() => renderHaproxyCfg({ ...lbBase, datastore: { ...lbBase.datastore!, nodes: lbBase.datastore!.nodes.slice(0, 1) } }), RenderInputError);
  assert.throws(() => renderHaproxyCfg({ ...lbBase, datastore: { ...lbBase.datastore!, peers: { ...lbBase.datastore!.peers, self: 'lb9' } } }), RenderInputError);
});

/**
 * Runs the check script with a stand-in `mariadb`: the status query prints
 * the given rows; the causal read prints ON unless `stalled` (where the real
 * one blocks until `timeout` kills it, and prints nothing).
 */
function check(status: Record<string, string>, o: { drain?: boolean; stalled?: boolean } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-galera-check-'));
  try {
    const rows = Object.entries(status).map(([k, v]) => `${k}\\t${v}`).join('\\n');
    writeFileSync(join(dir, 'mariadb'), `#!/bin/sh\ncase "$*" in *wsrep_sync_wait*) ${o.stalled ? 'exit 1' : "echo ON"} ;; *) printf '${rows}\\n' ;; esac\n`);
    chmodSync(join(dir, 'mariadb'), 0o755);
    const script = renderGaleraCheckScript({ kineUser: 'k3s' }).replace('/var/lib/k8s-ha/galera-drain', o.drain ? join(dir, 'mariadb') : join(dir, 'absent'));
    writeFileSync(join(dir, 'check'), script);
    const r = run('sh', [join(dir, 'check')], 'GET / HTTP/1.0\r\nHost: x\r\n\r\n', { PATH: `${dir}:${process.env.PATH}` });
    return r.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the health check answers 200 only for a Synced node in the primary component; a Donor, a non-primary node, a stopped server or a drained node get 503', () => {
  const ok = { wsrep_local_state_comment: 'Synced', wsrep_cluster_status: 'Primary', wsrep_ready: 'ON', kine_sessions: '0' };
  assert.match(check(ok), /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(check({ ...ok, wsrep_local_state_comment: 'Donor/Desynced' }), /^HTTP\/1\.1 503 /);
  assert.match(check({ ...ok, wsrep_cluster_status: 'non-Primary', wsrep_ready: 'OFF' }), /^HTTP\/1\.1 503 /);
  assert.match(check({}), /^HTTP\/1\.1 503 /);
  assert.match(check(ok, { drain: true }), /^HTTP\/1\.1 503 /);
  const body = check(ok).split('\r\n\r\n')[1]!;
  assert.equal(Number(/Content-Length: (\d+)/.exec(check(ok))![1]), Buffer.byteLength(body));
});

test('a node without kine\'s sessions must also pass a causal read (a stalled group fails it); the writer is not held to it', () => {
  const ok = { wsrep_local_state_comment: 'Synced', wsrep_cluster_status: 'Primary', wsrep_ready: 'ON', kine_sessions: '0' };
  assert.match(check(ok, { stalled: true }), /^HTTP\/1\.1 503 [^]*wsrep_causal_read=OFF/, 'a silent member not yet evicted: not fit to become the writer');
  assert.match(check({ ...ok, kine_sessions: '12' }, { stalled: true }), /^HTTP\/1\.1 200 OK[^]*wsrep_causal_read=writer/, 'the writer stays through a member joining or leaving');
  const script = renderGaleraCheckScript({ kineUser: 'k3s' });
  assert.match(script, /FROM information_schema\.processlist WHERE user = 'k3s'/);
  assert.match(script, /timeout 1 mariadb --batch --skip-column-names -e "SET SESSION wsrep_sync_wait = 1; SELECT 'ON'"/);
  assert.throws(() => renderGaleraCheckScript({ kineUser: "k3s' OR '1" }), RenderInputError);
});

test('the check socket binds the node address even before it exists (FreeBind), and garbd gets the data nodes and the same failure detection', () => {
  const sock = renderGaleraCheckSocket('10.0.0.10', 9200);
  assert.match(sock, /^ListenStream=10\.0\.0\.10:9200$/m);
  assert.match(sock, /^Accept=yes$/m);
  assert.match(sock, /^FreeBind=yes$/m);
  const garb = renderGarbDefaults({ clusterName: 'lab', nodes: ['10.0.0.11', '10.0.0.10'], suspectTimeoutMs: 2000 });
  assert.match(garb, /^GALERA_NODES="10\.0\.0\.10:4567,10\.0\.0\.11:4567"$/m);
  assert.match(garb, /^GALERA_GROUP="lab"$/m);
  assert.match(garb, /^GALERA_OPTIONS="evs\.keepalive_period=PT0\.5S;.*evs\.suspect_timeout=PT2S;/m);
});

test('taking the virtual IP starts the datastore hold-down: keepalived runs the script, which marks the hold table and never fails', () => {
  const script = renderVipHoldScript('/run/haproxy/admin.sock');
  assert.match(script, /^echo 'set table k3s_datastore_hold key 1 data\.gpt0 1000' \| socat - UNIX:\/run\/haproxy\/admin\.sock >\/dev\/null 2>&1$/m);
  assert.match(script, /^exit 0$/m);
  const cfg = renderHaproxyCfg(lbBase);
  assert.match(cfg, /\|\| held_vip hold_running$/m, 'the mark 1000 holds like a lost writer');
  const conf = renderKeepalivedConf({ ...galeraLbKeepalived, notifyMaster: '/usr/local/sbin/k8s-ha-datastore-hold' });
  assert.match(conf, /^\s+notify_master "\/usr\/local\/sbin\/k8s-ha-datastore-hold"$/m);
});

test('the writer is read from the writer table and the server ids of `show servers state`', () => {
  const out = [
    '# table: k3s_datastore_writer, type: integer, size:1, used:1',
    '0x7fafa50025e8: key=1 use=0 exp=0 gpt0=2',
    '',
    '1',
    '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state',
    '7 k3s_datastore 1 infra1 10.0.0.10 2 0 1 1 2 17 0 0 7 0 0 1 - 3307 - 0 9200 - - 9200',
    '7 k3s_datastore 2 infra2 10.0.0.11 2 0 1 1 4 15 3 2 6 0 0 1 - 3307 - 0 9200 - - 9200',
  ].join('\n');
  assert.equal(parseWriterTable(out), 'infra2');
  assert.equal(parseWriterTable(out.replace('gpt0=2', 'gpt0=0')), null, 'no writer recorded yet');
  assert.equal(parseWriterTable(out.replace('gpt0=2', 'gpt0=9')), null, 'an id no server has');
  assert.equal(parseWriterTable('# table: k3s_datastore_writer, type: integer, size:1, used:0\n'), null);
});
