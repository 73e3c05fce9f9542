import type { StatusSnapshot } from '../../src/status/model.js';

/**
 * Hand-made status snapshots for the page's tests: a healthy cluster with two
 * nginx load balancers and a virtual IP, two servers, two agents, MariaDB and
 * a MetalLB pool, and one function per degradation, each breaking one thing.
 */
export function healthySnapshot(at = '2026-12-01T12:03:40.000Z'): StatusSnapshot {
  const node = (name: string, roles: string[] = []) => ({ name, ready: true, why: '', kubeletVersion: 'v1.31.4+k3s1', roles, simulated: false });
  return {
    cluster: 'home',
    apiServerUrl: 'https://10.0.0.10:6443',
    at,
    ms: 640,
    hosts: [
      { name: 'lb1', address: '10.0.0.11', roles: ['loadbalancer', 'datastore'], reachable: true },
      { name: 'lb2', address: '10.0.0.12', roles: ['loadbalancer'], reachable: true },
      { name: 'server1', address: '10.0.0.21', roles: ['server'], reachable: true },
      { name: 'server2', address: '10.0.0.22', roles: ['server'], reachable: true },
      { name: 'agent1', address: '10.0.0.31', roles: ['agent'], reachable: true },
      { name: 'agent2', address: '10.0.0.32', roles: ['agent'], reachable: true },
    ],
    loadBalancers: ['lb1', 'lb2'].map((host) => ({
      host,
      kind: 'nginx' as const,
      unit: 'nginx',
      active: true,
      method: 'probe-from-lb' as const,
      upstreams: [
        { name: 'server1', address: '10.0.0.21', state: 'up' as const, detail: '/ping: pong' },
        { name: 'server2', address: '10.0.0.22', state: 'up' as const, detail: '/ping: pong' },
      ],
    })),
    vip: { address: '10.0.0.10', holders: ['lb1'], unknown: [] },
    datastores: [{ host: 'lb1', active: true, reachable: true, version: '10.11.6-MariaDB-0+deb12u1', sizeBytes: 5_400_000, kineRows: 1834 }],
    kube: { via: 'server1', nodes: [node('agent1'), node('agent2'), node('server1', ['control-plane']), node('server2', ['control-plane'])], expected: ['server1', 'server2', 'agent1', 'agent2'] },
    metallb: { pools: [{ name: 'default', size: 6, used: [{ service: 'web/shop', ip: '10.0.0.50' }] }], pending: [], outside: [] },
  };
}

/** server2 frozen: SSH times out, both LBs' probes fail, its node not yet NotReady. */
export function serverDown(s = healthySnapshot()): StatusSnapshot {
  s.hosts[3] = { ...s.hosts[3]!, reachable: false, error: 'no answer over SSH within 2 s' };
  for (const lb of s.loadBalancers) lb.upstreams[1] = { ...lb.upstreams[1]!, state: 'down', detail: 'curl: (28) Operation timed out after 2001 milliseconds' };
  return s;
}

/** The primary LB's nginx stopped: the VIP moved to lb2. */
export function primaryLbDown(s = healthySnapshot()): StatusSnapshot {
  s.loadBalancers[0] = { ...s.loadBalancers[0]!, active: false, upstreams: s.loadBalancers[0]!.upstreams.map((u) => ({ ...u, state: 'unknown' as const, detail: '' })) };
  s.vip = { address: '10.0.0.10', holders: ['lb2'], unknown: [] };
  return s;
}

export function vipNowhere(s = healthySnapshot()): StatusSnapshot {
  s.vip = { address: '10.0.0.10', holders: [], unknown: [] };
  return s;
}

export function splitBrain(s = healthySnapshot()): StatusSnapshot {
  s.vip = { address: '10.0.0.10', holders: ['lb1', 'lb2'], unknown: [] };
  return s;
}

export function datastoreDown(s = healthySnapshot()): StatusSnapshot {
  s.datastores[0] = { host: 'lb1', active: false, reachable: false, version: null, sizeBytes: null, kineRows: null };
  return s;
}

export function agentNotReady(s = healthySnapshot()): StatusSnapshot {
  s.kube.nodes[0] = { ...s.kube.nodes[0]!, ready: false, why: 'NodeStatusUnknown: Kubelet stopped posting node status.' };
  return s;
}

export function apiDown(s = healthySnapshot()): StatusSnapshot {
  s.kube = { via: null, nodes: [], expected: s.kube.expected, error: 'server1: connection refused; server2: connection refused' };
  s.metallb = { pools: [], pending: [], outside: [], error: 'not read: the API answers on no server' };
  return s;
}

export function poolFull(s = healthySnapshot()): StatusSnapshot {
  s.metallb!.pools[0] = { name: 'default', size: 2, used: [{ service: 'web/shop', ip: '10.0.0.50' }, { service: 'web/blog', ip: '10.0.0.51' }] };
  s.metallb!.pending = ['web/wiki'];
  return s;
}
