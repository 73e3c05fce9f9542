import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadCluster, type Deployment } from '../../src/cluster/open.js';
import { collectStatus, haproxyState, parseHaproxyStat, parseUpstreamProbe, upstreamProbe } from '../../src/status/collect.js';
import { degradations } from '../../src/status/model.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { ConnectionError } from '../../src/transport/host.js';
import { Secret } from '../../src/util/secret.js';

const SHOW_STAT = `# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr
k3s_api,FRONTEND,,,1,3,4096,20,1,2,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,1,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,
k3s_servers,cp1,0,0,1,2,,9,1,2,,0,,0,0,0,0,UP,1,1,0,0,0,100,0,,1,3,1,,9,,2,0,,1,L7OK,200,3,,,,,,,,,,,0,0,,,,,3,OK,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,10.20.0.31:6443
k3s_servers,cp2,0,0,0,1,,5,1,2,,0,,0,0,0,0,DOWN,1,1,0,1,1,5,5,,1,3,2,,5,,2,0,,1,L4CON,,0,,,,,,,,,,,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,0,,,,10.20.0.32:6443
k3s_servers,cp3,0,0,0,1,,5,1,2,,0,,0,0,0,0,MAINT,1,1,0,0,0,5,5,,1,3,3,,5,,2,0,,1,,,0,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,,,2,2,0,,,,10.20.0.33:6443
k3s_servers,BACKEND,0,0,1,3,410,20,1,2,0,0,,0,0,0,0,UP,1,1,0,,0,100,0,,1,3,0,,20,,1,0,,1,,,,,,,,,,,,,,0,0,0,0,0,0,3,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,
`;

function dep(file: string): Deployment {
  const { cluster } = loadCluster(file, { HOME: '/root' });
  return { spec: cluster, secrets: { k3sToken: new Secret('t'), datastorePassword: new Secret('p'), vrrpPass: new Secret('v') }, file };
}

/** The HA example's hosts answering like a real cluster; `down` hosts refuse SSH. */
function haHosts(o: { down?: string[]; vipOn?: string[]; mariadbActive?: boolean } = {}) {
  const hosts = new Map<string, MemoryHost>();
  const sql: { cmd: string; stdin: string }[] = [];
  for (const [name, addr] of [['lb1', '10.20.0.11'], ['lb2', '10.20.0.12'], ['db', '10.20.0.20'], ['cp1', '10.20.0.31'], ['cp2', '10.20.0.32'], ['cp3', '10.20.0.33'], ['w1', '10.20.0.41'], ['w2', '10.20.0.42']] as const) {
    const h = new MemoryHost({ name, address: addr, services: { haproxy: { active: true }, mariadb: { active: o.mariadbActive ?? true } } });
    h.handle(/^true$/, () => ok());
    h.handle(/show stat/, () => ok(SHOW_STAT));
    h.handle(/^ip -o addr show$/, () => ok(`1: lo    inet 127.0.0.1/8 scope host lo\n2: eth0    inet ${addr}/24 brd 10.20.0.255 scope global eth0\n${o.vipOn?.includes(name) ? '2: eth0    inet 10.20.0.10/24 scope global secondary eth0\n' : ''}`));
    h.handle(/^mariadb --batch/, (cmd, stdin) => {
      sql.push({ cmd: cmd.text, stdin });
      if (stdin.includes('VERSION()')) return ok("version\t10.11.6-MariaDB-0+deb12u1\nsize\t5406720\nkine\t1\n");
      if (stdin.includes('.kine')) return ok('1834\n');
      return { code: 1, stdout: '', stderr: 'unexpected SQL' };
    });
    h.handle(/k3s kubectl .*get nodes/, () => ok(JSON.stringify({ items: ['cp1', 'cp2', 'cp3', 'w1', 'w2'].map((n) => ({ metadata: { name: n }, status: { conditions: [{ type: 'Ready', status: 'True' }], nodeInfo: { kubeletVersion: 'v1.31.4+k3s1' } } })) })));
    h.handle(/k3s kubectl .*get services --all-namespaces/, () =>
      ok(JSON.stringify({ items: [
        { metadata: { namespace: 'web', name: 'shop' }, spec: { type: 'LoadBalancer' }, status: { loadBalancer: { ingress: [{ ip: '10.20.0.200' }] } } },
        { metadata: { namespace: 'web', name: 'new' }, spec: { type: 'LoadBalancer' }, status: { loadBalancer: {} } },
        { metadata: { namespace: 'default', name: 'kubernetes' }, spec: { type: 'ClusterIP' } },
      ] })),
    );
    hosts.set(name, h);
  }
  const host = async (n: string) => {
    if (o.down?.includes(n)) throw new ConnectionError(n, `${hosts.get(n)!.address}:22`, 'connecting', 'connection refused');
    return hosts.get(n)!;
  };
  return { hosts, host, sql };
}

test('HAProxy show stat is read per backend server with its status and check', () => {
  const rows = parseHaproxyStat(SHOW_STAT, 'k3s_servers');
  assert.deepEqual(rows.map((r) => `${r.name} ${r.status} ${r.check}`), ['cp1 UP L7OK OK', 'cp2 DOWN L4CON Connection refused', 'cp3 MAINT ']);
  assert.deepEqual(['UP', 'UP 1/2', 'DOWN', 'DOWN 1/2', 'MAINT', 'no check', '?'].map(haproxyState), ['up', 'up', 'down', 'down', 'maint', 'up', 'unknown']);
});

test('the upstream probe output is read per address', () => {
  const m = parseUpstreamProbe('192.168.0.157\tup\tpong\n192.168.0.158\tdown\tcurl: (7) Failed to connect\n');
  assert.deepEqual(m.get('192.168.0.157'), { state: 'up', detail: '/ping: pong' });
  assert.deepEqual(m.get('192.168.0.158'), { state: 'down', detail: 'curl: (7) Failed to connect' });
});

test('status of the HA example: HAProxy view per LB, VIP holder, datastore size and kine rows, nodes, pool use', async () => {
  const { host, sql } = haHosts({ vipOn: ['lb1'] });
  const s = await collectStatus({ deployment: dep('examples/ha-vip-haproxy.yaml'), host, now: () => new Date(0) });
  assert.equal(s.hosts.every((h) => h.reachable), true);
  assert.equal(s.loadBalancers.length, 2);
  assert.equal(s.loadBalancers[0]!.method, 'haproxy-admin-socket');
  assert.deepEqual(s.loadBalancers[0]!.upstreams.map((u) => `${u.name}=${u.state}`), ['cp1=up', 'cp2=down', 'cp3=maint']);
  assert.deepEqual(s.vip, { address: '10.20.0.10', holders: ['lb1'], unknown: [] });
  assert.deepEqual(s.datastores[0], { host: 'db', active: true, reachable: true, version: '10.11.6-MariaDB-0+deb12u1', sizeBytes: 5406720, kineRows: 1834 });
  // The SQL went on stdin; no credentials anywhere on the command line.
  assert.ok(sql.every((q) => q.cmd === 'mariadb --batch --skip-column-names'));
  assert.equal(s.kube.via, 'cp1');
  assert.deepEqual(s.metallb!.pools, [{ name: 'default', size: 21, used: [{ service: 'web/shop', ip: '10.20.0.200' }] }]);
  assert.deepEqual(s.metallb!.pending, ['web/new']);
  assert.deepEqual(degradations(s), [
    'load balancer on lb1: upstream cp2 is down (DOWN, check L4CON Connection refused)',
    'load balancer on lb1: upstream cp3 is maint (MAINT)',
    'load balancer on lb2: upstream cp2 is down (DOWN, check L4CON Connection refused)',
    'load balancer on lb2: upstream cp3 is maint (MAINT)',
  ]);
});

test('with the primary LB unreachable and the datastore stopped, status still shows the rest and names both', async () => {
  const { host } = haHosts({ down: ['lb1', 'cp1'], vipOn: ['lb2'], mariadbActive: false });
  const s = await collectStatus({ deployment: dep('examples/ha-vip-haproxy.yaml'), host });
  assert.deepEqual(s.vip, { address: '10.20.0.10', holders: ['lb2'], unknown: ['lb1'] });
  assert.equal(s.kube.via, 'cp2', 'the nodes were asked from the next server');
  const d = degradations(s);
  assert.ok(d.includes('host lb1 (10.20.0.11) unreachable: lb1 (10.20.0.11:22): connecting: connection refused'), d.join('\n'));
  assert.ok(d.includes('datastore on db: mariadb is not running'));
  assert.ok(!d.some((x) => x.startsWith('load balancer on lb1: upstream')));
});

test('nginx upstreams are probed from the LB host (curl /ping, else a TCP connect)', async () => {
  const lb = new MemoryHost({ name: 'infra', address: '192.168.0.156', services: { nginx: { active: true } } });
  const probes: string[] = [];
  lb.handle(/\/ping/, (cmd) => (probes.push(cmd.text), ok('192.168.0.157\tup\tpong\n192.168.0.158\tdown\tcurl: (7) Failed to connect to 192.168.0.158 port 6443\n')));
  lb.handle(/^true$/, () => ok());
  const others = new Map<string, MemoryHost>();
  const s = await collectStatus({
    deployment: dep('examples/seed.yaml'),
    host: async (n) => {
      if (n === 'infra') return lb;
      if (!others.has(n)) others.set(n, new MemoryHost({ name: n }).handle(/^true$/, () => ok()));
      return others.get(n)!;
    },
  });
  assert.equal(s.loadBalancers[0]!.method, 'probe-from-lb');
  assert.deepEqual(s.loadBalancers[0]!.upstreams.map((u) => `${u.name}=${u.state}`), ['server1=up', 'server2=down']);
  assert.match(probes[0]!, /192\.168\.0\.157 192\.168\.0\.158/);
  assert.equal(s.vip, null);
});

test('a host that never answers (frozen) is unreachable after timeouts.hostMs, and only the parts that need it wait for it', async () => {
  const { host } = haHosts({ vipOn: ['lb1'] });
  const frozen = new Set(['cp1', 'w2']);
  const t0 = Date.now();
  const s = await collectStatus({
    deployment: dep('examples/ha-vip-haproxy.yaml'),
    timeouts: { hostMs: 300, probeMs: 1500 },
    // A frozen machine: the connection is there, no command ever returns.
    host: async (n) => (frozen.has(n) ? Object.assign(Object.create(await host(n)) as MemoryHost, { exec: () => new Promise(() => undefined) }) : host(n)),
  });
  const ms = Date.now() - t0;
  assert.ok(ms < 1500, `the round took ${ms} ms`);
  assert.deepEqual(s.hosts.filter((h) => !h.reachable).map((h) => `${h.name}: ${h.error}`), ['cp1: no answer over SSH within 0.3 s', 'w2: no answer over SSH within 0.3 s']);
  assert.equal(s.kube.via, 'cp2', 'the nodes were asked from the next server');
  assert.deepEqual(s.vip?.holders, ['lb1']);
});

test('the upstream probe takes its bound in seconds (fractions too) for curl and the TCP fallback', () => {
  const text = upstreamProbe(['10.0.0.1'], 6443, 1.5).text;
  assert.match(text, /curl -ksS --max-time 1\.5 /);
  assert.match(text, /timeout 1\.5 bash/);
});
