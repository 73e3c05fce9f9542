import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { KubeApiError, KubeClient, collectionPath } from '../../src/kube/client.js';

/**
 * The client against a TEST DOUBLE of the Kubernetes API: a local HTTPS
 * server that, like k3s's apiserver, demands a client certificate signed by
 * the cluster CA (anonymous auth off, FACTS) and answers a few paths.
 */
function pki(dir: string): { ca: Buffer; serverCert: Buffer; serverKey: Buffer; cert: Buffer; key: Buffer; otherCert: Buffer; otherKey: Buffer } {
  const o = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  o('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=k3s-server-ca', '-days', '2');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  const leaf = (name: string, cn: string, ext: boolean, ca = 'ca') => {
    o('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', cn);
    o('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', ...(ext ? ['-extfile', 'san.ext'] : []));
  };
  leaf('server', '/CN=k3s', true);
  leaf('admin', '/O=system:masters/CN=system:admin', false);
  o('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'other.key', '-out', 'other.crt', '-subj', '/CN=intruder', '-days', '2');
  const r = (f: string) => readFileSync(join(dir, f));
  return { ca: r('ca.crt'), serverCert: r('server.crt'), serverKey: r('server.key'), cert: r('admin.crt'), key: r('admin.key'), otherCert: r('other.crt'), otherKey: r('other.key') };
}

interface ApiDouble {
  url: string;
  objects: Map<string, unknown>;
  nodes: { name: string; ready: boolean; role?: string }[];
  close(): Promise<void>;
}

async function apiDouble(p: ReturnType<typeof pki>): Promise<ApiDouble> {
  const objects = new Map<string, unknown>();
  const nodes: ApiDouble['nodes'] = [];
  const server: Server = createServer({ cert: p.serverCert, key: p.serverKey, ca: p.ca, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (!(req.socket as TLSSocket).authorized) return json(401, { kind: 'Status', message: 'Unauthorized', code: 401 });
    const url = req.url ?? '';
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (url === '/readyz') return res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      if (url === '/api/v1/nodes') {
        return json(200, {
          items: nodes.map((n) => ({
            metadata: { name: n.name, labels: n.role ? { [`node-role.kubernetes.io/${n.role}`]: 'true' } : {} },
            status: { conditions: [{ type: 'Ready', status: n.ready ? 'True' : 'False' }], addresses: [{ type: 'InternalIP', address: '10.0.0.1' }] },
          })),
        });
      }
      if (req.method === 'POST') {
        const obj = JSON.parse(body) as { metadata: { name: string } };
        const key = `${url}/${obj.metadata.name}`;
        if (objects.has(key)) return json(409, { kind: 'Status', message: `configmaps "${obj.metadata.name}" already exists`, code: 409 });
        objects.set(key, obj);
        return json(201, obj);
      }
      if (req.method === 'GET' && objects.has(url)) return json(200, objects.get(url));
      if (req.method === 'DELETE' && objects.delete(url)) return json(200, { kind: 'Status', status: 'Success' });
      return json(404, { kind: 'Status', message: `${url} not found`, code: 404 });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `https://127.0.0.1:${port}`, objects, nodes, close: () => new Promise((r) => server.close(() => r())) };
}

/**
 * A fresh PKI in a temp dir, the API double serving it and a client with the
 * kubeconfig certificate; the directory and the server go when the test ends.
 */
async function withApiDouble(t: TestContext): Promise<{ p: ReturnType<typeof pki>; api: Awaited<ReturnType<typeof apiDouble>>; client: KubeClient }> {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-kube-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const p = pki(dir);
  const api = await apiDouble(p);
  t.after(() => api.close());
  return { p, api, client: new KubeClient({ server: api.url, ca: p.ca, cert: p.cert, key: p.key }) };
}

test('the client authenticates with the kubeconfig certificate, lists nodes, creates, reads and deletes objects', async (t) => {
  const { api, client: c } = await withApiDouble(t);
  assert.equal(await c.raw('/readyz'), 'ok');
  api.nodes.push({ name: 'server1', ready: true, role: 'control-plane' }, { name: 'agent1', ready: false });
  assert.deepEqual(await c.nodes(), [
    { name: 'agent1', ready: false, roles: [], addresses: ['10.0.0.1'] },
    { name: 'server1', ready: true, roles: ['control-plane'], addresses: ['10.0.0.1'] },
  ]);
  const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'probe', namespace: 'default' }, data: { a: '1' } };
  await c.create(cm);
  await assert.rejects(c.create(cm), (e: Error) => e instanceof KubeApiError && e.status === 409 && /already exists/.test(e.message));
  assert.deepEqual((await c.get('/api/v1/namespaces/default/configmaps/probe')).metadata, cm.metadata);
  await c.delete(cm);
  await c.delete(cm); // already gone: fine
  await assert.rejects(c.get('/api/v1/namespaces/default/configmaps/probe'), /HTTP 404/);
});

test('waiting for Ready nodes is bounded and says what it saw last', async (t) => {
  const { api, client: c } = await withApiDouble(t);
  api.nodes.push({ name: 's1', ready: true }, { name: 'a1', ready: false });
  setTimeout(() => (api.nodes[1]!.ready = true), 60);
  assert.equal((await c.waitForReadyNodes(2, { timeoutMs: 2000, intervalMs: 20 })).length, 2);
  await assert.rejects(c.waitForReadyNodes(3, { timeoutMs: 100, intervalMs: 20 }), /fewer than 3 Ready nodes after 0\.1 s; last seen: a1 Ready, s1 Ready/);
});

test('a certificate the cluster CA did not sign is refused by the server, and a server the CA did not sign by the client', async (t) => {
  const { p, api } = await withApiDouble(t);
  await assert.rejects(new KubeClient({ server: api.url, ca: p.ca, cert: p.otherCert, key: p.otherKey }).nodes(), /HTTP 401: Unauthorized/);
  await assert.rejects(new KubeClient({ server: api.url, ca: p.otherCert, cert: p.cert, key: p.key }).nodes(), (e: Error) => e instanceof KubeApiError && e.status === null);
});

test('collection paths for core, grouped and cluster-scoped kinds', () => {
  assert.equal(collectionPath({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'ns' } }), '/api/v1/namespaces/ns/configmaps');
  assert.equal(collectionPath({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } }), '/api/v1/namespaces');
  assert.equal(collectionPath({ apiVersion: 'metallb.io/v1beta1', kind: 'IPAddressPool', metadata: { name: 'p', namespace: 'metallb-system' } }), '/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools');
  assert.equal(collectionPath({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' } }), '/apis/apps/v1/namespaces/default/deployments');
});
