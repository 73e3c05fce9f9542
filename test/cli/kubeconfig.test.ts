import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import type { RunHooks } from '../../src/cli/commands/plan.js';
import { MemoryHost } from '../../src/transport/memory.js';
import { runCli, tempDir } from './helpers.js';

const ADMIN = `apiVersion: v1
clusters:
- cluster: {certificate-authority-data: Q0E=, server: 'https://127.0.0.1:6443'}
  name: default
contexts:
- context: {cluster: default, user: default}
  name: default
current-context: default
kind: Config
users:
- name: default
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
`;

function setup(dir: string, opts: { server1Down?: boolean; noKubeconfig?: boolean } = {}): RunHooks {
  writeFileSync(
    join(dir, 'home.yaml'),
    `apiVersion: k8s-ha/v1
name: home
ssh: {user: root}
hosts:
  - {name: lb, address: 10.7.0.10, roles: [loadbalancer, datastore]}
  - {name: server1, address: 10.7.0.11, roles: [server]}
  - {name: server2, address: 10.7.0.12, roles: [server]}
loadBalancer: {kind: nginx, port: 6443}
datastore: {kind: mariadb, password: generate}
k3s: {version: v1.31.4+k3s1, token: generate}
`,
  );
  const hosts = new Map(['lb', 'server1', 'server2'].map((n) => [n, new MemoryHost({ name: n })]));
  if (!opts.noKubeconfig) hosts.get('server2')!.setFile('/etc/rancher/k3s/k3s.yaml', ADMIN, { mode: 0o600 });
  return {
    open: {
      connect: async (h) => {
        if (opts.server1Down && h.name === 'server1') throw new Error('server1 (10.7.0.11:22): connecting: connection refused');
        return hosts.get(h.name)!;
      },
    },
  };
}

test('kubeconfig writes <cluster>.kubeconfig beside the cluster file, mode 0600, pointed at the LB and named after the cluster', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['kubeconfig', '-f', 'home.yaml'], { cwd: dir, hooks: setup(dir) });
  assert.equal(r.code, 0, r.stderr);
  const out = join(dir, 'home.kubeconfig');
  assert.equal(statSync(out).mode & 0o777, 0o600);
  const k = parse(readFileSync(out, 'utf8')) as { clusters: { name: string; cluster: { server: string } }[]; 'current-context': string };
  assert.deepEqual(k.clusters.map((c) => [c.name, c.cluster.server]), [['home', 'https://10.7.0.10:6443']]);
  assert.equal(k['current-context'], 'home');
  assert.match(r.stdout, /Wrote the kubeconfig of "home" \(API https:\/\/10\.7\.0\.10:6443, read from server2\) to home\.kubeconfig \(mode 0600/);
  assert.match(r.stdout, /kubectl --kubeconfig home\.kubeconfig get nodes/);
  assert.ok(!existsSync(join(dir, 'home.state.yaml')), 'reading a kubeconfig must not write a state file with fresh secrets');
});

test('kubeconfig -o writes where asked; a server that cannot be reached is skipped for the next', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['kubeconfig', '-f', 'home.yaml', '-o', 'out/admin.yaml'], { cwd: dir, hooks: setup(dir, { server1Down: true }) });
  assert.equal(r.code, 0, r.stderr);
  assert.match(readFileSync(join(dir, 'out/admin.yaml'), 'utf8'), /server: https:\/\/10\.7\.0\.10:6443/);
});

test('kubeconfig --merge replaces only the cluster\'s entries in $KUBECONFIG and leaves other contexts untouched', async (t) => {
  const dir = tempDir(t);
  const kc = join(dir, 'kube', 'config');
  mkdirSync(join(dir, 'kube'));
  writeFileSync(
    kc,
    `apiVersion: v1
kind: Config
clusters:
- {name: work, cluster: {server: 'https://work:6443'}}
- {name: home, cluster: {server: 'https://old:6443'}}
users:
- {name: work, user: {token: t}}
contexts:
- {name: work, context: {cluster: work, user: work}}
current-context: work
`,
  );
  const r = await runCli(['kubeconfig', '-f', 'home.yaml', '--merge'], { cwd: dir, env: { KUBECONFIG: `${kc}:/nonexistent/second` }, hooks: setup(dir) });
  assert.equal(r.code, 0, r.stderr);
  const k = parse(readFileSync(kc, 'utf8')) as { clusters: { name: string; cluster: { server: string } }[]; contexts: { name: string }[]; users: { name: string }[]; 'current-context': string };
  assert.deepEqual(k.clusters.map((c) => [c.name, c.cluster.server]), [['work', 'https://work:6443'], ['home', 'https://10.7.0.10:6443']]);
  assert.deepEqual(k.contexts.map((c) => c.name), ['work', 'home']);
  assert.deepEqual(k.users.map((u) => u.name), ['work', 'home']);
  assert.equal(k['current-context'], 'home');
  assert.equal(statSync(kc).mode & 0o777, 0o600);
  assert.match(r.stdout, /Merged cluster, user and context "home" .* current context is now "home"; 1 other context left as they were/);
});

test('kubeconfig --merge without KUBECONFIG writes ~/.kube/config', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['kubeconfig', '-f', 'home.yaml', '--merge'], { cwd: dir, hooks: setup(dir) });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(dir, '.kube', 'config')));
});

test('kubeconfig before k3s ran says to apply first; -o with --merge is a usage error', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['kubeconfig', '-f', 'home.yaml'], { cwd: dir, hooks: setup(dir, { noKubeconfig: true }) });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /server1: \/etc\/rancher\/k3s\/k3s\.yaml does not exist: k3s has not started there yet; run `k8s-ha apply` first/);
  const u = await runCli(['kubeconfig', '-f', 'home.yaml', '-o', 'x', '--merge'], { cwd: dir, hooks: setup(dir) });
  assert.equal(u.code, 2);
  assert.match(u.stderr, /-o and --merge exclude each other/);
});

test('kubeconfig -o DIR writes NAME.kubeconfig inside it, and a failed write leaves no temporary file with credentials', async (t) => {
  const dir = tempDir(t);
  const hooks = setup(dir);
  const out = join(dir, 'out');
  mkdirSync(out);
  const r = await runCli(['kubeconfig', '-f', 'home.yaml', '-o', 'out'], { cwd: dir, hooks });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(out), ['home.kubeconfig']);
  assert.equal(statSync(join(out, 'home.kubeconfig')).mode & 0o777, 0o600);
  // The file to replace is a directory: the rename fails after the credentials were written beside it.
  const sub = join(out, 'sub');
  mkdirSync(join(sub, 'home.kubeconfig', 'inside'), { recursive: true });
  const failed = await runCli(['kubeconfig', '-f', 'home.yaml', '-o', sub], { cwd: dir, hooks });
  assert.equal(failed.code, 1, failed.stdout);
  assert.deepEqual(readdirSync(sub), ['home.kubeconfig'], 'a temporary file with credentials was left behind');
});
