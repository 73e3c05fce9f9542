import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { test } from 'node:test';
import { parse } from 'yaml';
import {
  CLUSTER_CRITICAL_KEYS,
  K3sAgentConfigInput,
  K3sServerConfigInput,
  RenderInputError,
  criticalSettings,
  diffCriticalSettings,
  envFileValue,
  k3sConfigObject,
  k3sEnvFilePath,
  k3sUnitPath,
  renderK3sConfig,
  renderK3sEnvFile,
  renderK3sUnit,
} from '../../src/render/index.js';
import { MASK, Secret } from '../../src/util/secret.js';
import { assertFieldErrors, assertGolden, run, which, withTempFile } from '../fixtures/render/helpers.js';
import { skipOrFail } from '../../lab/testing.js';

const TOKEN = 'K10abc::server:s3cr3t-token';
const ENDPOINT = 'mysql://k3s:pw@tcp(10.0.0.2:3306)/k3s';

const server: K3sServerConfigInput = {
  role: 'server',
  nodeName: 'server-a',
  nodeIp: ['10.0.0.5'],
  token: new Secret(TOKEN),
  agentToken: new Secret('agent-secret'),
  datastoreEndpoint: new Secret(ENDPOINT),
  datastoreCaFile: '/etc/rancher/k3s/datastore-ca.pem',
  tlsSan: ['k3s.example.com', '10.0.0.100', 'api.lab'],
  disable: ['traefik', 'servicelb'],
  nodeTaints: ['CriticalAddonsOnly=true:NoExecute'],
  nodeLabels: ['topology.kubernetes.io/zone=a', 'k8s-ha/role=server'],
  clusterCidr: '10.42.0.0/16',
  serviceCidr: '10.43.0.0/16',
  clusterDns: '10.43.0.10',
  clusterDomain: 'cluster.local',
  secretsEncryption: true,
  extraArgs: { 'kube-apiserver-arg': ['audit-log-maxage=7', 'audit-log-path=/var/log/k3s-audit.log'], 'protect-kernel-defaults': true, 'kubelet-arg': 'on' },
};

const agent: K3sAgentConfigInput = {
  role: 'agent',
  nodeName: 'agent-1',
  nodeIp: ['10.0.0.21', 'fd00::21'],
  server: { host: '10.0.0.100', port: 6443 },
  token: new Secret(TOKEN),
  nodeLabels: ['k8s-ha/role=agent'],
};

test('k3s server config.yaml matches the expected file (masked)', () => {
  assertGolden('k3s-server-config.yaml', renderK3sConfig(server, { maskSecrets: true }));
});

test('k3s agent config.yaml matches the expected file (masked)', () => {
  assertGolden('k3s-agent-config.yaml', renderK3sConfig(agent, { maskSecrets: true }));
});

test('k3s config.yaml parses back to the same settings, with sorted keys and lists', () => {
  const text = renderK3sConfig(server);
  const parsed = parse(text) as Record<string, unknown>;
  assert.deepEqual(parsed, k3sConfigObject(server));
  assert.deepEqual(Object.keys(parsed), Object.keys(parsed).sort());
  assert.equal(parsed['token'], TOKEN);
  assert.equal(parsed['datastore-endpoint'], ENDPOINT);
  assert.deepEqual(parsed['tls-san'], ['10.0.0.100', 'api.lab', 'k3s.example.com']);
  assert.deepEqual(parsed['disable'], ['servicelb', 'traefik']);
  assert.equal(parsed['write-kubeconfig-mode'], '0600');
  // YAML 1.1 readers (k3s) would take a bare `on` for true: it is quoted.
  assert.match(text, /^kubelet-arg: "on"$/m);
  assert.match(text, /^write-kubeconfig-mode: "0600"$/m);
  const agentParsed = parse(renderK3sConfig(agent)) as Record<string, unknown>;
  assert.equal(agentParsed['server'], 'https://10.0.0.100:6443');
  assert.deepEqual(agentParsed['node-ip'], ['10.0.0.21', 'fd00::21']);
  assert.equal(parse(renderK3sConfig({ ...agent, server: { host: 'fd00::100', port: 6443 } }))['server'], 'https://[fd00::100]:6443');
});

test('k3s config.yaml is the same whatever the order of list inputs', () => {
  const shuffledInput: K3sServerConfigInput = {
    ...server,
    tlsSan: [...server.tlsSan].reverse(),
    disable: [...server.disable!].reverse(),
    nodeLabels: [...server.nodeLabels!].reverse(),
    extraArgs: Object.fromEntries(Object.entries(server.extraArgs!).reverse()),
  };
  assert.equal(renderK3sConfig(shuffledInput), renderK3sConfig(server));
});

test('k3s config.yaml masked for a plan holds no secret', () => {
  const masked = renderK3sConfig(server, { maskSecrets: true });
  for (const s of [TOKEN, 'agent-secret', ENDPOINT, 'pw@tcp']) assert.ok(!masked.includes(s), s);
  assert.match(masked, new RegExp(`^token: "?${MASK.replace(/\*/g, '\\*')}"?$`, 'm'));
});

test('k3s config refuses extra args that would override a managed key and values that are not valid', () => {
  const bad: [string, Partial<K3sServerConfigInput>][] = [
    ['extraArgs.token', { extraArgs: { token: 'x' } }],
    ['extraArgs.datastore-endpoint', { extraArgs: { 'datastore-endpoint': 'sqlite://' } }],
    ['extraArgs.cluster-init', { extraArgs: { 'cluster-init': true } }],
    ['extraArgs.Bad_Key', { extraArgs: { Bad_Key: 'x' } }],
    ['extraArgs.kubelet-arg', { extraArgs: { 'kubelet-arg': 'a\nb' } }],
    ['nodeName', { nodeName: 'Server_A' }],
    ['nodeIp[0]', { nodeIp: ['10.0.0.5/24'] }],
    ['nodeTaints[0]', { nodeTaints: ['CriticalAddonsOnly=true'] }],
    ['nodeTaints[0]', { nodeTaints: ['a=b:Sometimes'] }],
    ['nodeLabels[0]', { nodeLabels: ['novalue'] }],
    ['nodeLabels[0]', { nodeLabels: ['a=b c'] }],
    ['tlsSan', { tlsSan: [] }],
    ['tlsSan[0]', { tlsSan: ['bad name'] }],
    ['disable[0]', { disable: ['Traefik,servicelb'] }],
    ['clusterCidr', { clusterCidr: '10.42.0.0' }],
    ['clusterDns', { clusterDns: '10.43.0.10; rm' }],
    ['datastoreCaFile', { datastoreCaFile: 'ca.pem' }],
    ['datastoreCertFile', { datastoreCertFile: '/etc/c.pem' }],
  ];
  assertFieldErrors(renderK3sConfig, server, bad);
  assert.throws(() => renderK3sConfig({ ...agent, server: { host: 'lb;x', port: 6443 } }), RenderInputError);
});

test('the k3s server unit matches the expected file and puts no flags on the command line', () => {
  const unit = renderK3sUnit({ role: 'server' });
  assertGolden('k3s.service', unit);
  assert.match(unit, /^ExecStart=\/usr\/local\/bin\/k3s server$/m);
  assert.match(unit, /^Type=notify$/m);
  assert.match(unit, /^KillMode=process$/m);
  assert.match(unit, /^Delegate=yes$/m);
  assert.match(unit, /^EnvironmentFile=-\/etc\/systemd\/system\/k3s.service.env$/m);
  assert.equal(k3sUnitPath('server'), '/etc/systemd/system/k3s.service');
  assert.equal(k3sEnvFilePath('agent'), '/etc/systemd/system/k3s-agent.service.env');
});

test('the k3s agent unit matches the expected file', () => {
  const unit = renderK3sUnit({ role: 'agent' });
  assertGolden('k3s-agent.service', unit);
  assert.match(unit, /^ExecStart=\/usr\/local\/bin\/k3s agent$/m);
  assert.match(unit, /^Type=exec$/m);
  assert.match(unit, /^EnvironmentFile=-\/etc\/systemd\/system\/k3s-agent.service.env$/m);
  assert.throws(() => renderK3sUnit({ role: 'server', execPath: '/usr/local/bin/k3s --token x' }), RenderInputError);
});

test('systemd-analyze verify finds nothing wrong in the k3s units', (t) => {
  const sa = which('systemd-analyze');
  if (sa === undefined) return t.skip(skipOrFail('systemd-analyze not installed') || undefined);
  for (const role of ['server', 'agent'] as const) {
    // The real binary is not on this machine; verify checks ExecStart exists.
    withTempFile(role === 'server' ? 'k3s.service' : 'k3s-agent.service', renderK3sUnit({ role, execPath: '/bin/true' }), (path) => {
      const r = run(sa, ['verify', path]);
      assert.equal(r.status, 0, r.stderr);
      // Unknown keys and bad values are warnings with exit status 0.
      assert.equal(r.stderr.trim(), '', r.stderr);
    });
  }
});

test('the k3s env file quotes values for systemd and masks secrets for plans', () => {
  const vars = { K3S_TOKEN: new Secret('a"b$c`d\\e'), HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: '10.0.0.0/8,.svc' };
  const text = renderK3sEnvFile(vars);
  assertGolden('k3s.service.env', renderK3sEnvFile(vars, { maskSecrets: true }));
  assert.equal(text.split('\n')[1], `K3S_TOKEN="a\\"b\\$c\\\`d\\\\e"`);
  // The four escapes are also exactly POSIX sh's inside double quotes, so a
  // shell sourcing the file (as the install script's OpenRC service does)
  // reads the same value back.
  withTempFile('k3s.env', text, (path) => {
    const r = run('/bin/sh', ['-c', '. "$1"; printf %s "$K3S_TOKEN"', 'sh', path]);
    assert.equal(r.stdout, 'a"b$c`d\\e');
  });
  assert.equal(envFileValue('plain'), '"plain"');
  assert.equal(renderK3sEnvFile({}), '');
  assert.throws(() => renderK3sEnvFile({ 'BAD-NAME': 'x' }), RenderInputError);
  assert.throws(() => renderK3sEnvFile({ A: 'x\ny' }), RenderInputError);
  assert.throws(() => renderK3sEnvFile({ A: new Secret('x\ny') }), RenderInputError);
});

test('critical settings ignore formatting and report exactly the keys that differ', () => {
  const a = criticalSettings(k3sConfigObject(server));
  // The same settings as a host's hand-written file would hold them.
  const b = criticalSettings({
    disable: 'traefik, servicelb',
    'cluster-cidr': '10.42.0.0/16',
    'service-cidr': '10.43.0.0/16',
    'cluster-dns': '10.43.0.10',
    'cluster-domain': 'cluster.local',
    'secrets-encryption': 'true',
    token: TOKEN,
    'agent-token': 'agent-secret',
    'datastore-endpoint': ENDPOINT,
    'node-name': 'server-b',
    'disable-network-policy': false,
  });
  assert.deepEqual(diffCriticalSettings(a, b), []);
  const c = criticalSettings({ ...k3sConfigObject(server), disable: ['traefik'], token: 'other', 'disable-kube-proxy': true, 'node-ip': ['10.0.0.9'] });
  assert.deepEqual(diffCriticalSettings(a, c), ['disable', 'disable-kube-proxy', 'token']);
  // Secret-bearing values never print.
  assert.ok(!inspect(a).includes(TOKEN));
  assert.ok(!JSON.stringify(a).includes('agent-secret'));
  assert.ok(CLUSTER_CRITICAL_KEYS.includes('cluster-cidr') && CLUSTER_CRITICAL_KEYS.includes('disable'));
});
