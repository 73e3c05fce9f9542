// examples/ha-galera.yaml with loadBalancer.kind: nginx (issue 14): validate
// accepts it, the load balancer phase renders the datastore listener, its
// server file (every node down until the checker opens one) and the
// checker's datastore part, keepalived's notify_master records the takeover,
// the checker's marks are not drift, and status/backup read nginx's writer.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { loadClusterFile } from '../../src/spec/index.js';
import { lbDesired, nginxGaleraRoute } from '../../src/phases/loadbalancer.js';
import { vipDesired } from '../../src/phases/vip.js';
import { parseNginxWriter, writersByLoadBalancer } from '../../src/phases/galera-writer.js';
import { NGINX_CONF_PATH } from '../../src/render/nginx.js';
import { LBCHECK_SCRIPT_PATH } from '../../src/render/lbcheck.js';
import { NGINX_DATASTORE_STATE_PATH, NGINX_WRITER_PATH, renderDatastoreState } from '../../src/render/nginx-datastore.js';
import { VIP_HOLD_SCRIPT_PATH } from '../../src/render/haproxy-datastore.js';
import { Secret } from '../../src/util/secret.js';
import { MemoryHost } from '../../src/transport/memory.js';
import { withTempFile } from '../fixtures/render/helpers.js';

function nginxCluster(edit: (doc: Record<string, Record<string, unknown>>) => void = () => {}) {
  const doc = parse(readFileSync('examples/ha-galera.yaml', 'utf8')) as Record<string, Record<string, unknown>>;
  doc.loadBalancer = { ...doc.loadBalancer, kind: 'nginx' };
  edit(doc);
  const r = withTempFile('cluster.yaml', stringify(doc), (path) => loadClusterFile(path, { HOME: '/root' }, { sshKeys: false }));
  return { cluster: r.cluster!, diagnostics: r.diagnostics };
}

test('Galera behind nginx validates with a warning; without the checker or as a container it is refused, naming the field', () => {
  const ok = nginxCluster();
  assert.deepEqual(ok.diagnostics.filter((d) => d.severity === 'error' && !d.path.startsWith('ssh')).map((d) => `${d.path}: ${d.message}`), []);
  // Accepted with a warning that says how proven it is.
  assert.ok(ok.diagnostics.some((d) => d.severity === 'warning' && d.path === 'loadBalancer.kind' && /less proven than HAProxy/.test(d.message)), JSON.stringify(ok.diagnostics));
  const off = nginxCluster((d) => (d.loadBalancer = { ...d.loadBalancer, nginx: { activeCheck: false } }));
  assert.ok(off.diagnostics.some((d) => d.severity === 'error' && d.path === 'loadBalancer.nginx.activeCheck'), JSON.stringify(off.diagnostics));
  const docker = nginxCluster((d) => (d.loadBalancer = { ...d.loadBalancer, deploy: 'docker' }));
  assert.ok(docker.diagnostics.some((d) => d.severity === 'error' && d.path === 'loadBalancer.deploy'), JSON.stringify(docker.diagnostics));
});

test('the load balancer phase renders the datastore listener, a closed server file and the checker\'s datastore part; MariaDB\'s socket off on a data node', () => {
  const { cluster } = nginxCluster();
  const d = lbDesired(cluster, 'infra1');
  const file = (p: string) => d.files?.find((f) => f.path === p)?.content ?? '';
  assert.match(file(NGINX_CONF_PATH), /upstream k3s_datastore \{[^}]*include \/etc\/nginx\/k8s-ha-datastore\.conf;/);
  assert.match(file(NGINX_CONF_PATH), /listen 3306;\n\s+proxy_pass k3s_datastore;\n[\s\S]*proxy_protocol on;[\s\S]*proxy_next_upstream off;/);
  const route = nginxGaleraRoute(cluster)!;
  assert.deepEqual(route.nodes.map((n) => `${n.name} ${n.address}:${n.port}`), ['infra1 10.20.0.11:3307', 'infra2 10.20.0.12:3307'], 'the preferred writer first');
  assert.equal(route.virtualIP, '10.20.0.10');
  assert.equal(route.holdMs, 1500);
  assert.equal(file(NGINX_DATASTORE_STATE_PATH), renderDatastoreState(route));
  assert.match(file(LBCHECK_SCRIPT_PATH), /^HOLD_MS=1500$/m);
  assert.match(file(LBCHECK_SCRIPT_PATH), /^VIP='10\.20\.0\.10'$/m);
  assert.match(file(LBCHECK_SCRIPT_PATH), /durl_1='http:\/\/10\.20\.0\.11:9200\/'/);
  assert.ok(d.services?.some((s) => s.unit === 'mariadb.socket' && s.enabled === false), 'mariadb.socket off: it would hold *:3306');
  assert.ok(d.services?.some((s) => s.unit === 'nginx' && s.reloadOn?.includes(NGINX_DATASTORE_STATE_PATH)));
});

test('keepalived\'s notify_master records the takeover time for nginx (HAProxy: marks its hold table)', () => {
  const { cluster } = nginxCluster();
  const d = vipDesired(cluster, 'infra1', 24, new Secret('vrrppass'));
  const hold = d.files?.find((f) => f.path === VIP_HOLD_SCRIPT_PATH)?.content ?? '';
  assert.match(hold, /date \+%s%3N > \/run\/k8s-ha\/datastore-takeover\.tmp/);
  assert.doesNotMatch(hold, /socat/);
  const conf = d.files?.find((f) => f.path.endsWith('keepalived.conf'))?.content ?? '';
  assert.match(conf, /notify_master "\/usr\/local\/sbin\/k8s-ha-datastore-hold"/);
});

test('status and backup read the writer nginx\'s checker chose on each load balancer', async () => {
  const { cluster } = nginxCluster();
  assert.equal(parseNginxWriter('infra2\n', ['infra1', 'infra2']), 'infra2');
  assert.equal(parseNginxWriter('', ['infra1', 'infra2']), null);
  assert.equal(parseNginxWriter('elsewhere', ['infra1', 'infra2']), null);
  const hosts = new Map(['infra1', 'infra2'].map((n) => [n, new MemoryHost({ name: n })]));
  // The command's output as a shell would give it: the file, or nothing.
  hosts.get('infra1')!.handle((text) => text.includes(NGINX_WRITER_PATH), () => ({ code: 0, stdout: 'infra2\n', stderr: '' }));
  hosts.get('infra2')!.handle((text) => text.includes(NGINX_WRITER_PATH), () => ({ code: 0, stdout: '', stderr: '' }));
  const w = await writersByLoadBalancer(cluster, async (n) => hosts.get(n)!);
  assert.deepEqual(w.map((x) => [x.lb, x.writer]), [['infra1', 'infra2'], ['infra2', null]]);
});
