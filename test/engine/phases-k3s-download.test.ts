import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadCluster } from '../../src/cluster/open.js';
import { K3sArtifacts, parseChecksums, releaseAssetNames } from '../../src/phases/k3s-install.js';

/**
 * `install.source: download` against a TEST DOUBLE of k3s's release site: a
 * local HTTP server laid out like github.com/k3s-io/k3s/releases/download
 * (VERSION/k3s, VERSION/sha256sum-amd64.txt, ...). No real download happens.
 */
const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

interface ReleaseDouble {
  url: string;
  hits: string[];
  files: Map<string, string>;
  close(): Promise<void>;
}

async function releaseSiteDouble(files: Record<string, string>): Promise<ReleaseDouble> {
  const map = new Map(Object.entries(files));
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(req.url ?? '');
    hits.push(path);
    const body = map.get(path);
    if (body === undefined) {
      res.writeHead(404).end('Not Found');
      return;
    }
    // GitHub answers release assets with a redirect to its object store.
    if (!path.startsWith('/objects')) {
      res.writeHead(302, { location: `/objects${path}` }).end();
      map.set(`/objects${path}`, body);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, hits, files: map, close: () => new Promise((r) => server.close(() => r())) };
}

function clusterFile(dir: string, version = 'v1.31.4+k3s1'): string {
  const f = join(dir, 'c.yaml');
  writeFileSync(
    f,
    `apiVersion: k8s-ha/v1
name: dl
ssh: {user: root}
hosts:
  - {name: lb, address: 10.8.0.10, roles: [loadbalancer, datastore]}
  - {name: s1, address: 10.8.0.11, roles: [server]}
loadBalancer: {kind: nginx}
datastore: {kind: mariadb, password: generate}
k3s: {version: ${version}, token: generate}
`,
  );
  return f;
}

const V = 'v1.31.4+k3s1';
const amd = 'the k3s binary for amd64\n';
const arm = 'the k3s binary for arm64\n';
const sums = (bin: string, name: string) => `${sha(bin)}  ${name}\n${sha('images')}  k3s-airgap-images-amd64.tar.zst\n`;

test('the release binary is fetched with its published checksum, verified, cached, and a second run needs no network', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-dl-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const site = await releaseSiteDouble({ [`/${V}/k3s`]: amd, [`/${V}/sha256sum-amd64.txt`]: sums(amd, 'k3s'), [`/${V}/k3s-arm64`]: arm, [`/${V}/sha256sum-arm64.txt`]: sums(arm, 'k3s-arm64') });
  t.after(() => site.close());
  const { cluster } = loadCluster(clusterFile(dir), {});
  const cacheDir = join(dir, 'cache');
  const a = new K3sArtifacts({ releasesUrl: site.url, cacheDir });

  const bin = await a.binary(cluster, 'amd64');
  assert.equal(bin.sha256, sha(amd));
  assert.equal(bin.origin, `${site.url}/v1.31.4%2Bk3s1/k3s`);
  // Planning needs only the checksum list, never the binary.
  assert.deepEqual(site.hits, [`/${V}/sha256sum-amd64.txt`, `/objects/${V}/sha256sum-amd64.txt`]);
  assert.equal((await bin.load()).toString(), amd);
  assert.equal(readFileSync(join(cacheDir, V, 'k3s'), 'utf8'), amd);
  const arm64 = await a.binary(cluster, 'arm64');
  assert.equal((await arm64.load()).toString(), arm);

  // A new process with the site gone: the cache answers.
  await site.close();
  const offline = new K3sArtifacts({ releasesUrl: site.url, cacheDir });
  const again = await offline.binary(cluster, 'amd64');
  assert.equal((await again.load()).toString(), amd);
});

test('a download that does not match the published checksum is refused and not cached', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-dl-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const site = await releaseSiteDouble({ [`/${V}/k3s`]: 'tampered\n', [`/${V}/sha256sum-amd64.txt`]: sums(amd, 'k3s') });
  t.after(() => site.close());
  const { cluster } = loadCluster(clusterFile(dir), {});
  const a = new K3sArtifacts({ releasesUrl: site.url, cacheDir: join(dir, 'cache') });
  const bin = await a.binary(cluster, 'amd64');
  await assert.rejects(bin.load(), /sha256 [0-9a-f]{64} does not match [0-9a-f]{64} from sha256sum-amd64\.txt; the download is corrupt or was tampered with: nothing was installed/);
  assert.throws(() => readFileSync(join(dir, 'cache', V, 'k3s')));
});

test('an unknown version and an unreachable release site fail with the fix', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-dl-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const site = await releaseSiteDouble({});
  const { cluster } = loadCluster(clusterFile(dir, 'v1.99.0+k3s1'), {});
  await assert.rejects(new K3sArtifacts({ releasesUrl: site.url, cacheDir: join(dir, 'c1') }).binary(cluster, 'amd64'), /HTTP 404 .*no such release: check k3s\.version/);
  await site.close();
  await assert.rejects(new K3sArtifacts({ releasesUrl: site.url, cacheDir: join(dir, 'c2') }).binary(cluster, 'amd64'), /downloading .*sha256sum-amd64\.txt: .*use k3s\.install\.source: local/);
});

test('release asset names follow k3s per architecture, and checksum lists parse', () => {
  assert.deepEqual(releaseAssetNames('amd64'), { binary: 'k3s', checksums: 'sha256sum-amd64.txt' });
  assert.deepEqual(releaseAssetNames('arm64'), { binary: 'k3s-arm64', checksums: 'sha256sum-arm64.txt' });
  assert.deepEqual(releaseAssetNames('armhf'), { binary: 'k3s-armhf', checksums: 'sha256sum-arm.txt' });
  assert.throws(() => releaseAssetNames('riscv64'), /no binary for the architecture riscv64/);
  const m = parseChecksums(`${'a'.repeat(64)}  k3s\n${'B'.repeat(64)} *k3s-arm64\nnoise\n`);
  assert.equal(m.get('k3s'), 'a'.repeat(64));
  assert.equal(m.get('k3s-arm64'), 'b'.repeat(64));
});
