import assert from 'node:assert/strict';
import { test } from 'node:test';
import { judgeNodes, nodeStates, poolOf, verifyObjects } from '../../src/verify/checks.js';
import { formatReport, makeReport, reportToJSON, type CheckResult } from '../../src/verify/report.js';

const checks: CheckResult[] = [
  { id: 'api', title: 'Kubernetes API answers on a server', status: 'pass', detail: '/readyz ok on server1', ms: 120 },
  { id: 'lb-http', title: 'the address answers HTTP from this machine', status: 'skip', detail: 'the nodes are simulated by kwok', ms: 0 },
  { id: 'nodes-ready', title: 'every node is Ready', status: 'fail', detail: '4/5 nodes Ready\nagent2: not Ready (KubeletNotReady)', ms: 2500 },
];

test('the report shows each check with its result and time, details indented, and a summary naming failed and skipped checks', () => {
  const r = makeReport('seed', checks, 3000);
  assert.equal(r.ok, false);
  assert.equal(
    formatReport(r),
    [
      'PASS  Kubernetes API answers on a server (0.1 s)',
      '       /readyz ok on server1',
      'SKIP  the address answers HTTP from this machine (0.0 s)',
      '       the nodes are simulated by kwok',
      'FAIL  every node is Ready (2.5 s)',
      '       4/5 nodes Ready',
      '       agent2: not Ready (KubeletNotReady)',
      '',
      'Verification FAILED: 1 passed, 1 failed (nodes-ready), 1 skipped (lb-http), in 3.0 s.',
      '',
    ].join('\n'),
  );
});

test('skipped checks do not fail a report', () => {
  const r = makeReport('seed', checks.filter((c) => c.status !== 'fail'), 10);
  assert.equal(r.ok, true);
  assert.match(formatReport(r), /^Cluster verified: 1 passed, 0 failed, 1 skipped \(lb-http\)/m);
});

test('the JSON report carries every check with id, status, detail and time', () => {
  const j = reportToJSON(makeReport('seed', checks, 3000));
  assert.equal(j.ok, false);
  assert.deepEqual((j.checks as { id: string; status: string }[]).map((c) => `${c.id}:${c.status}`), ['api:pass', 'lb-http:skip', 'nodes-ready:fail']);
});

test('nodes: a missing node and a NotReady one are named with the reason; extra nodes are mentioned', () => {
  const nodes = nodeStates([
    { metadata: { name: 'server1', labels: { 'node-role.kubernetes.io/control-plane': 'true', 'node-role.kubernetes.io/master': 'true' } }, status: { conditions: [{ type: 'Ready', status: 'True' }], nodeInfo: { kubeletVersion: 'v1.31.4+k3s1' } } },
    { metadata: { name: 'agent1' }, status: { conditions: [{ type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message: 'Kubelet stopped posting node status.' }] } },
    { metadata: { name: 'stray', annotations: { 'kwok.x-k8s.io/node': 'fake' } }, status: {} },
  ]);
  assert.deepEqual(nodes.find((n) => n.name === 'server1')!.roles, ['control-plane', 'master']);
  assert.equal(nodes.find((n) => n.name === 'stray')!.simulated, true);
  const v = judgeNodes(['server1', 'agent1', 'agent2'], nodes);
  assert.equal(v.ok, false);
  assert.equal(
    v.detail,
    '1/3 nodes Ready; not in the cluster file: stray\n' +
      'agent1: not Ready (NodeStatusUnknown: Kubelet stopped posting node status.)\n' +
      'agent2: no Node object (not joined; look at `journalctl -u k3s` or `-u k3s-agent` on agent2)',
  );
});

test('pool membership works for ranges and CIDRs, and not outside them', () => {
  const pools = [
    { name: 'a', addresses: ['192.168.0.170-192.168.0.175'] },
    { name: 'b', addresses: ['10.0.0.0/30', 'fd00::/120'] },
  ];
  assert.equal(poolOf('192.168.0.175', pools), 'a');
  assert.equal(poolOf('192.168.0.176', pools), null);
  assert.equal(poolOf('10.0.0.3', pools), 'b');
  assert.equal(poolOf('fd00::ff', pools), 'b');
  assert.equal(poolOf('not-an-ip', pools), null);
});

test('the test objects are a namespace, a Deployment on port 80 and a LoadBalancer Service selecting it', () => {
  const [ns, dep, svc] = verifyObjects('nginx:x') as { kind: string; spec?: Record<string, unknown> }[];
  assert.deepEqual([ns!.kind, dep!.kind, svc!.kind], ['Namespace', 'Deployment', 'Service']);
  assert.equal((svc!.spec as { type: string }).type, 'LoadBalancer');
  assert.match(JSON.stringify(dep), /"image":"nginx:x"/);
});
