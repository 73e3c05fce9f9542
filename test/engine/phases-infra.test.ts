import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterRun } from '../../src/cluster/open.js';
import { datastorePhase } from '../../src/phases/datastore.js';
import { loadBalancerPhase } from '../../src/phases/loadbalancer.js';
import { vipPhase } from '../../src/phases/vip.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { formatPlan, planToJSON } from '../../src/cli/output/plan.js';
import { runCli } from '../cli/helpers.js';
import { answerAccountSql, fakeMariadb, type FakeMariadb } from '../support/fleet-mariadb.js';

/**
 * Memory hosts for the infrastructure phases: Debian packages that start
 * their daemon on install (as Debian does), checkers that pass unless told
 * otherwise, `ip addr` for the VIP interface, and the fleet's MariaDB
 * (test/support/fleet-mariadb.ts) answering the SQL the datastore phase
 * sends on stdin.
 */
const ADDR: Record<string, string> = {
  infra: '10.9.0.10',
  lb1: '10.9.0.5',
  lb2: '10.9.0.6',
  server1: '10.9.0.11',
  server2: '10.9.0.12',
  server3: '10.9.0.13',
  agent1: '10.9.0.21',
};

function infraHost(name: string, db?: FakeMariadb): MemoryHost {
  const h = new MemoryHost({
    name,
    address: ADDR[name],
    catalog: {
      'nginx-light': { services: ['nginx'], files: { '/etc/nginx/nginx.conf': '# Debian default\nhttp { include /etc/nginx/sites-enabled/*; }\n' } },
      haproxy: { services: ['haproxy'], files: { '/etc/haproxy/haproxy.cfg': '# Debian default\n' } },
      keepalived: { services: ['keepalived'] },
      'mariadb-server': { version: '1:10.11.14-0+deb12u2', services: ['mariadb'], files: { '/etc/mysql/mariadb.conf.d/50-server.cnf': '[mysqld]\nbind-address = 127.0.0.1\n' } },
    },
  });
  // The memory host does not model unit files: the checker's unit exists, stopped.
  h.services.set('k8s-ha-lbcheck', { active: false, enabled: false, restarts: 0, reloads: 0, starts: 0, stops: 0 });
  h.handle(/^nginx -q -t -c /, () => ok());
  h.handle(/^haproxy -c -f /, () => ok());
  h.handle(/^keepalived --config-test /, () => ok());
  h.handle(/^mariadbd --defaults-file=/, () => ok());
  h.handle(/^ip -o -4 addr show dev eth0$/, () => ok(`2: eth0    inet ${ADDR[name]}/24 brd 10.9.0.255 scope global eth0\\       valid_lft forever preferred_lft forever\n`));
  h.handle(/^apt-cache policy /, () => ok('mariadb-server:\n  Installed: (none)\n  Candidate: 1:10.11.14-0+deb12u2\n'));
  if (db) {
    h.handle(/^mariadb --batch/, (_cmd, stdin) => {
      if (!h.services.get('mariadb')?.active) return { code: 1, stdout: '', stderr: "ERROR 2002 (HY000): Can't connect to local server through socket" };
      db.scripts.push(stdin);
      return ok(answerAccountSql(db, db.variables, stdin));
    });
  }
  return h;
}

interface InfraFake {
  dir: string;
  file: string;
  hosts: Map<string, MemoryHost>;
  db: FakeMariadb;
  events: EngineEvent[];
  write(yaml: string): void;
  open(): Promise<ClusterRun>;
  cleanup(): void;
}

/** The seed's shape: one infrastructure host (LB + datastore), servers, an agent. */
function seedYaml(opts: { servers?: string[]; lb?: string; extra?: string } = {}): string {
  const servers = opts.servers ?? ['server1', 'server2'];
  return `apiVersion: k8s-ha/v1
name: infra-test
ssh: {user: root}
hosts:
  - {name: infra, address: ${ADDR.infra}, roles: [loadbalancer, datastore]}
${servers.map((s) => `  - {name: ${s}, address: ${ADDR[s]}, roles: [server]}`).join('\n')}
  - {name: agent1, address: ${ADDR.agent1}, roles: [agent]}
loadBalancer: ${opts.lb ?? '{kind: nginx, port: 6443}'}
datastore: {kind: mariadb, database: k3s, user: k3s, password: generate}
k3s: {token: generate}
${opts.extra ?? ''}`;
}

/** Two LB hosts sharing a VIP, a separate datastore host. */
function vipYaml(): string {
  return `apiVersion: k8s-ha/v1
name: infra-vip
ssh: {user: root}
hosts:
  - {name: lb1, address: ${ADDR.lb1}, roles: [loadbalancer]}
  - {name: lb2, address: ${ADDR.lb2}, roles: [loadbalancer]}
  - {name: infra, address: ${ADDR.infra}, roles: [datastore]}
  - {name: server1, address: ${ADDR.server1}, roles: [server]}
  - {name: server2, address: ${ADDR.server2}, roles: [server]}
loadBalancer:
  kind: haproxy
  port: 6443
  virtualIP: {address: 10.9.0.100, interface: eth0, routerId: 51, advertInterval: 1s, unicast: true}
datastore: {kind: mariadb, database: k3s, user: k3s, password: generate, tls: {enabled: true}}
k3s: {token: generate}
`;
}

function infraFake(yaml: string): InfraFake {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-infra-'));
  const file = join(dir, 'cluster.yaml');
  const db = fakeMariadb();
  const hosts = new Map<string, MemoryHost>();
  for (const n of Object.keys(ADDR)) hosts.set(n, infraHost(n, n === 'infra' ? db : undefined));
  const events: EngineEvent[] = [];
  const fake: InfraFake = {
    dir,
    file,
    hosts,
    db,
    events,
    write: (y) => writeFileSync(file, y),
    open: () =>
      ClusterRun.open(file, {
        env: { HOME: dir },
        phases: [loadBalancerPhase, vipPhase, datastorePhase],
        connect: async (h) => hosts.get(h.name)!,
        events: (e) => void events.push(e),
      }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  fake.write(yaml);
  return fake;
}

// ---------------------------------------------------------------- the tests

const lbSummaries = (p: Awaited<ReturnType<ClusterRun['plan']>>, phase: string, host: string) =>
  p.steps.filter((s) => s.phase === phase && s.host === host).flatMap((s) => s.changes.map((c) => c.summary));

async function withRun<T>(f: InfraFake, fn: (run: ClusterRun) => Promise<T>): Promise<T> {
  const run = await f.open();
  try {
    return await fn(run);
  } finally {
    await run.close();
  }
}

test('a plan on bare hosts lists the packages, files and services of each infrastructure host', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  const plan = await withRun(f, (r) => r.plan());
  assert.deepEqual(lbSummaries(plan, 'loadbalancer', 'infra'), [
    'install nginx-light libnginx-mod-stream curl',
    'create /etc/nginx/k8s-ha-upstream.conf',
    'create /etc/nginx/nginx.conf',
    'create /usr/local/sbin/k8s-ha-lbcheck',
    'create /etc/systemd/system/k8s-ha-lbcheck.service',
    'systemctl daemon-reload',
    'enable nginx',
    'start nginx',
    'enable k8s-ha-lbcheck',
    'start k8s-ha-lbcheck',
  ]);
  const ds = lbSummaries(plan, 'datastore', 'infra');
  assert.deepEqual(ds.slice(0, 4), ['install mariadb-server', 'create /etc/mysql/mariadb.conf.d/60-k8s-ha.cnf', 'enable mariadb', 'start mariadb']);
  assert.match(ds[4]!, /create database k3s and accounts k3s@10\.9\.0\.11, k3s@10\.9\.0\.12/);
  // No VIP in the seed; servers and agents are not touched by these phases.
  assert.equal(plan.steps.filter((s) => s.host !== 'infra').length, 0);
  assert.equal(plan.problems.filter((p) => p.severity === 'error').length, 0);
  // plan changed nothing
  for (const h of f.hosts.values()) assert.deepEqual(h.writes, []);
  assert.equal(f.hosts.get('infra')!.packages.size, 0);
});

test('the rendered nginx.conf forwards 6443 to every server with a short connect timeout', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  const conf = f.hosts.get('infra')!.text('/etc/nginx/nginx.conf')!;
  // The servers are in the file the active checker marks; nginx.conf includes it.
  assert.match(conf, /include \/etc\/nginx\/k8s-ha-upstream\.conf;/);
  const upstream = f.hosts.get('infra')!.text('/etc/nginx/k8s-ha-upstream.conf')!;
  assert.match(upstream, /^server 10\.9\.0\.11:6443 max_fails=1 fail_timeout=10s; # server1$/m);
  assert.match(upstream, /^server 10\.9\.0\.12:6443 max_fails=1 fail_timeout=10s; # server2$/m);
  assert.match(conf, /proxy_connect_timeout \d+s;/);
  assert.doesNotMatch(conf, /proxy_connect_timeout 60s/);
  const cnf = f.hosts.get('infra')!.text('/etc/mysql/mariadb.conf.d/60-k8s-ha.cnf')!;
  assert.match(cnf, /bind-address = 10\.9\.0\.10/);
  assert.match(cnf, /auto_increment_increment = 1/);
  // 10.11.14 knows innodb_snapshot_isolation, so the line is written.
  assert.match(cnf, /innodb_snapshot_isolation = OFF/);
  assert.deepEqual([...f.db.users.keys()].sort(), [ADDR.server1, ADDR.server2]);
  assert.deepEqual([...f.db.grants].sort(), [ADDR.server1, ADDR.server2]);
});

test('applying and then planning again is empty, and the second apply restarts nothing', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  const infra = f.hosts.get('infra')!;
  const before = JSON.stringify([...infra.services]);
  const logAt = infra.log.length;
  const plan = await withRun(f, (r) => r.plan());
  assert.equal(plan.empty, true, JSON.stringify(plan.steps.map((s) => s.changes.map((c) => c.summary))));
  const again = await withRun(f, (r) => r.apply());
  assert.equal(again.changed, 0);
  assert.equal(JSON.stringify([...infra.services]), before);
  const later = infra.log.slice(logAt);
  assert.deepEqual(later.filter((c) => /systemctl (restart|reload|start)|apt-get install/.test(c)), []);
  // The second runs only read the accounts; no SQL that changes anything was sent.
  assert.equal(f.db.scripts.filter((s) => /CREATE USER|ALTER USER|DROP USER/.test(s)).length, 1);
});

test('with nginx the active checker is installed, enabled and running, with curl and a 0755 script', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  const infra = f.hosts.get('infra')!;
  assert.ok(infra.packages.has('curl'));
  assert.deepEqual(infra.services.get('k8s-ha-lbcheck'), { active: true, enabled: true, restarts: 1, reloads: 0, starts: 0, stops: 0 });
  const script = infra.text('/usr/local/sbin/k8s-ha-lbcheck')!;
  assert.match(script, /^#!\/bin\/sh$/m);
  assert.match(script, /url_1='https:\/\/10\.9\.0\.11:6443\/ping'/);
  assert.match(script, /^INTERVAL=0\.5$/m);
  assert.equal((await infra.stat('/usr/local/sbin/k8s-ha-lbcheck'))!.mode & 0o777, 0o755);
  assert.match(infra.text('/etc/systemd/system/k8s-ha-lbcheck.service')!, /^ExecStart=\/usr\/local\/sbin\/k8s-ha-lbcheck$/m);
});

test('activeCheck: false lists the servers in nginx.conf and stops and disables a checker set up earlier', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  f.write(seedYaml({ lb: '{kind: nginx, port: 6443, nginx: {activeCheck: false}}' }));
  const plan = await withRun(f, (r) => r.plan());
  assert.deepEqual(lbSummaries(plan, 'loadbalancer', 'infra'), ['update /etc/nginx/nginx.conf', 'reload nginx (/etc/nginx/nginx.conf changed)', 'disable k8s-ha-lbcheck', 'stop k8s-ha-lbcheck']);
  await withRun(f, (r) => r.apply());
  const infra = f.hosts.get('infra')!;
  assert.match(infra.text('/etc/nginx/nginx.conf')!, /server 10\.9\.0\.11:6443 max_fails=1/);
  assert.deepEqual({ ...infra.services.get('k8s-ha-lbcheck')!, restarts: 0, starts: 0 }, { active: false, enabled: false, restarts: 0, reloads: 0, starts: 0, stops: 1 });
  assert.equal((await withRun(f, (r) => r.plan())).empty, true);
});

test('the checker\'s down marks are not drift: planning again is empty and nothing is rewritten or reloaded', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  const infra = f.hosts.get('infra')!;
  // What k8s-ha-lbcheck writes when server2 fails its check.
  const path = '/etc/nginx/k8s-ha-upstream.conf';
  const marked = infra.text(path)!.replace('fail_timeout=10s; # server2', 'fail_timeout=10s down; # server2');
  await infra.writeFile(path, marked, { mode: 0o644, owner: 'root', group: 'root' });
  const writes = infra.writes.length;
  const plan = await withRun(f, (r) => r.plan());
  assert.equal(plan.empty, true, JSON.stringify(plan.steps.map((s) => s.changes.map((c) => c.summary))));
  assert.equal((await withRun(f, (r) => r.apply())).changed, 0);
  assert.equal(infra.text(path), marked);
  assert.equal(infra.writes.length, writes);
  assert.equal(infra.services.get('nginx')!.reloads, 0);
  // A hand edit that is not a down mark is drift and is put back.
  await infra.writeFile(path, marked.replace('max_fails=1', 'max_fails=9'), { mode: 0o644, owner: 'root', group: 'root' });
  assert.deepEqual(lbSummaries(await withRun(f, (r) => r.plan()), 'loadbalancer', 'infra'), [
    `update ${path}`,
    'reload nginx (/etc/nginx/k8s-ha-upstream.conf changed)',
  ]);
});

test('a changed server list reloads nginx and does not restart it', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  const nginx = f.hosts.get('infra')!.services.get('nginx')!;
  const restarts = nginx.restarts;
  f.write(seedYaml({ servers: ['server1', 'server2', 'server3'] }));
  const plan = await withRun(f, (r) => r.plan());
  assert.ok(lbSummaries(plan, 'loadbalancer', 'infra').includes('reload nginx (/etc/nginx/nginx.conf, /etc/nginx/k8s-ha-upstream.conf changed)'));
  // The server list is baked into the checker's script: it restarts with the new one.
  assert.ok(lbSummaries(plan, 'loadbalancer', 'infra').includes('restart k8s-ha-lbcheck (/usr/local/sbin/k8s-ha-lbcheck changed)'));
  await withRun(f, (r) => r.apply());
  assert.equal(nginx.restarts, restarts);
  assert.equal(nginx.reloads, 1);
  assert.match(f.hosts.get('infra')!.text('/etc/nginx/k8s-ha-upstream.conf')!, /^server 10\.9\.0\.13:6443 /m);
  assert.match(f.hosts.get('infra')!.text('/usr/local/sbin/k8s-ha-lbcheck')!, /url_3='https:\/\/10\.9\.0\.13:6443\/ping'/);
  assert.ok(f.db.users.has(ADDR.server3!));
});

test('a server removed from the cluster file loses its database account', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  f.write(seedYaml({ servers: ['server1'] }));
  const plan = await withRun(f, (r) => r.plan());
  assert.ok(lbSummaries(plan, 'datastore', 'infra').some((s) => s.includes(`drop k3s@${ADDR.server2} (not a server)`)));
  await withRun(f, (r) => r.apply());
  assert.deepEqual([...f.db.users.keys()], [ADDR.server1]);
});

test('a changed datastore password is converged from a server-side hash comparison', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  // Someone changed the account's password by hand.
  f.db.users.get(ADDR.server1!)!.password = 'not-the-generated-one';
  const plan = await withRun(f, (r) => r.plan());
  assert.deepEqual(lbSummaries(plan, 'datastore', 'infra'), [`set the password of k3s@${ADDR.server1}`]);
  const pw = await withRun(f, async (r) => {
    await r.apply();
    return r.deployment.secrets.datastorePassword.reveal();
  });
  assert.equal(f.db.users.get(ADDR.server1!)!.password, pw);
});

test('a config the checker rejects never goes live and the old file is kept', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  const infra = f.hosts.get('infra')!;
  const old = infra.text('/etc/nginx/nginx.conf');
  f.write(seedYaml({ servers: ['server1', 'server2', 'server3'] }));
  infra.failNext(/^nginx -q -t -c /, { code: 1, stderr: 'nginx: [emerg] unknown directive "stream"' });
  await assert.rejects(
    withRun(f, (r) => r.apply()),
    (e: Error) => /rejected the new content/.test(e.message) && /unknown directive "stream"/.test(e.message),
  );
  assert.equal(infra.text('/etc/nginx/nginx.conf'), old);
  assert.equal(infra.services.get('nginx')!.reloads, 0);
  assert.equal([...infra.files.keys()].filter((p) => p.includes('k8s-ha-memory')).length, 0);
});

test('the datastore password appears in no command text, plan output or event', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  const { pw, planText } = await withRun(f, async (r) => {
    const plan = await r.plan();
    const text = formatPlan(plan) + JSON.stringify(planToJSON(plan));
    await r.apply();
    return { pw: r.deployment.secrets.datastorePassword.reveal(), planText: text };
  });
  assert.ok(pw.length >= 16);
  // It did reach MariaDB, on stdin.
  assert.ok(f.db.scripts.some((s) => s.includes(pw)));
  assert.equal([...f.db.users.values()][0]!.password, pw);
  assert.ok(!planText.includes(pw));
  assert.match(planText, /IDENTIFIED BY '\*{8}'/);
  assert.ok(!JSON.stringify(f.events).includes(pw));
  for (const h of f.hosts.values()) {
    for (const c of h.log) assert.ok(!c.includes(pw), `${h.name} ran a command holding the password: ${c.slice(0, 80)}`);
  }
});

test('a preflight violation (auto_increment_increment=2) stops the apply before any change, with the message', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  const infra = f.hosts.get('infra')!;
  infra.packages.set('mariadb-server', '1:10.11.14-0+deb12u2');
  infra.services.set('mariadb', { active: true, enabled: true, restarts: 0, reloads: 0, starts: 1, stops: 0 });
  f.db.variables.AUTO_INCREMENT_INCREMENT = '2';
  const r = await runCli(['apply', '-f', f.file, '--yes'], { cwd: f.dir, hooks: { open: { connect: async (h) => f.hosts.get(h.name)!, phases: [loadBalancerPhase, vipPhase, datastorePhase] } } });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /auto_increment_increment is 2 on infra's running MariaDB/);
  assert.match(r.stderr, /fix: remove auto_increment_increment/);
  for (const h of f.hosts.values()) {
    assert.deepEqual(h.writes, [], `${h.name} was changed`);
    assert.deepEqual(h.log.filter((c) => /apt-get install|systemctl (start|restart|reload|enable)/.test(c)), []);
  }
});

test('innodb_snapshot_isolation ON is fixed by the drop-in when it is pending, and refused when something overrides it', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  const infra = f.hosts.get('infra')!;
  infra.packages.set('mariadb-server', '1:11.8.2-1');
  infra.services.set('mariadb', { active: true, enabled: true, restarts: 0, reloads: 0, starts: 1, stops: 0 });
  f.db.version = '11.8.2-MariaDB';
  f.db.variables.INNODB_SNAPSHOT_ISOLATION = 'ON';
  let plan = await withRun(f, (r) => r.plan());
  assert.deepEqual(plan.problems.filter((p) => p.severity === 'error'), []);
  assert.ok(plan.problems.some((p) => p.severity === 'warning' && /not a release k3s certifies/.test(p.message)));
  await withRun(f, (r) => r.apply());
  // Our file is in place, yet the server still says ON: a later setting wins.
  plan = await withRun(f, (r) => r.plan());
  assert.ok(plan.problems.some((p) => p.severity === 'error' && /innodb_snapshot_isolation is ON/.test(p.message)));
});

test('max_connections below what the servers need is refused', async (t) => {
  const f = infraFake(seedYaml().replace('password: generate}', 'password: generate, maxConnections: 30}'));
  t.after(f.cleanup);
  const plan = await withRun(f, (r) => r.plan());
  const p = plan.problems.find((x) => x.path === 'datastore.maxConnections' && x.severity === 'error');
  assert.ok(p, JSON.stringify(plan.problems));
  assert.match(p.hint!, /at least 50/);
});

/** openssl on the datastore host, modelled: issuing writes the four files, the status reads them. */
function modelDatastoreTls(f: InfraFake): MemoryHost {
  const infra = f.hosts.get('infra')!;
  const tlsDir = '/etc/mysql/k8s-ha-tls';
  infra.handle((c) => c.startsWith(`if [ -s ${tlsDir}/ca.pem ]`), () => ok(infra.files.has(`${tlsDir}/ca.pem`) ? 'ca=yes\ncert=ok\n' : 'ca=no\ncert=missing\n'));
  infra.handle((c) => c.startsWith('set -e; umask 077;'), () => {
    for (const [n, mode] of [['ca.pem', 0o644], ['ca-key.pem', 0o600], ['server.pem', 0o644], ['server-key.pem', 0o600]] as const) infra.setFile(`${tlsDir}/${n}`, `PEM ${n}\n`, { mode });
    return ok();
  });
  return infra;
}

test('two load balancers get keepalived with the first preferred, unicast peers and a 0600 config', async (t) => {
  const f = infraFake(vipYaml());
  t.after(f.cleanup);
  const infra = modelDatastoreTls(f);
  const plan = await withRun(f, (r) => r.plan());
  assert.deepEqual(lbSummaries(plan, 'vip', 'lb1'), ['install keepalived curl', 'create /usr/local/sbin/k8s-ha-lb-alive', 'create /etc/keepalived/keepalived.conf', 'enable keepalived', 'start keepalived']);
  assert.deepEqual(lbSummaries(plan, 'loadbalancer', 'lb2'), ['install haproxy socat', 'create /etc/haproxy/haproxy.cfg', 'enable haproxy', 'start haproxy']);
  assert.ok(lbSummaries(plan, 'datastore', 'infra').includes(`create the datastore CA and a server certificate for ${ADDR.infra}`));
  const vrrp = await withRun(f, async (r) => {
    await r.apply();
    return r.deployment.secrets.vrrpPass.reveal();
  });
  const k1 = f.hosts.get('lb1')!;
  const k2 = f.hosts.get('lb2')!;
  const c1 = k1.text('/etc/keepalived/keepalived.conf')!;
  const c2 = k2.text('/etc/keepalived/keepalived.conf')!;
  assert.match(c1, /priority (\d+)/);
  assert.ok(Number(/priority (\d+)/.exec(c1)![1]) > Number(/priority (\d+)/.exec(c2)![1]));
  assert.match(c1, new RegExp(`unicast_peer \\{\\s+${ADDR.lb2!.replace(/\./g, '\\.')}\\s+\\}`));
  assert.match(c1, /10\.9\.0\.100\/24 dev eth0/);
  // The track script asks for /ping through the local listener (6443), then the servers directly.
  assert.match(c1, /script "\/usr\/local\/sbin\/k8s-ha-lb-alive"/);
  const alive = k1.text('/usr/local/sbin/k8s-ha-lb-alive')!;
  assert.equal(k1.files.get('/usr/local/sbin/k8s-ha-lb-alive')!.mode, 0o755);
  assert.match(alive, /answered 'https:\/\/127\.0\.0\.1:6443\/ping' &/);
  for (const s of ['server1', 'server2']) assert.ok(alive.includes(`'https://${ADDR[s]}:6443/ping' &`), s);
  assert.equal(k1.files.get('/etc/keepalived/keepalived.conf')!.mode, 0o600);
  assert.ok(c1.includes(`auth_pass ${vrrp}`));
  assert.ok(!JSON.stringify(f.events).includes(vrrp));
  assert.ok(infra.log.some((c) => c.includes('openssl genpkey')));
  assert.match(infra.text('/etc/mysql/mariadb.conf.d/60-k8s-ha.cnf')!, /ssl_ca = \/etc\/mysql\/k8s-ha-tls\/ca\.pem/);
  assert.equal((await withRun(f, (r) => r.plan())).empty, true);
  assert.ok([...f.db.users.values()].every((u) => u.ssl === 'ANY'));
  assert.match(k1.text('/etc/haproxy/haproxy.cfg')!, /option httpchk GET \/ping/);
});

test('virtualIP.preempt: false gives both load balancers nopreempt (an update of keepalived.conf); the default preempts', async (t) => {
  const f = infraFake(vipYaml());
  t.after(f.cleanup);
  modelDatastoreTls(f);
  await withRun(f, (r) => r.apply());
  for (const lb of ['lb1', 'lb2']) assert.doesNotMatch(f.hosts.get(lb)!.text('/etc/keepalived/keepalived.conf')!, /nopreempt/, lb);
  f.write(vipYaml().replace('unicast: true}', 'unicast: true, preempt: false}'));
  const { plan, vrrp } = await withRun(f, async (r) => ({ plan: await r.plan(), vrrp: r.deployment.secrets.vrrpPass.reveal() }));
  for (const lb of ['lb1', 'lb2']) assert.ok(lbSummaries(plan, 'vip', lb).some((x) => x.startsWith('update /etc/keepalived/keepalived.conf')), `${lb}: ${lbSummaries(plan, 'vip', lb).join('; ')}`);
  // The diff of keepalived.conf shows the new line, and neither side shows the VRRP password, plain or --json.
  const text = formatPlan(plan);
  assert.match(text, /\+ {4}nopreempt/);
  assert.ok(!text.includes(vrrp), 'the plan text masks auth_pass');
  assert.ok(!JSON.stringify(planToJSON(plan)).includes(vrrp), 'the --json plan masks auth_pass');
  await withRun(f, (r) => r.apply());
  for (const lb of ['lb1', 'lb2']) {
    const conf = f.hosts.get(lb)!.text('/etc/keepalived/keepalived.conf')!;
    assert.match(conf, /state BACKUP\n[\s\S]*\n {4}nopreempt\n/, lb);
  }
  assert.equal((await withRun(f, (r) => r.plan())).empty, true);
});

test('deploy: docker without a docker command on the host is refused with how to fix it', async (t) => {
  const f = infraFake(seedYaml({ lb: '{kind: nginx, port: 6443, deploy: docker}' }));
  t.after(f.cleanup);
  f.hosts.get('infra')!.handle(/^command -v docker$/, () => ({ code: 1, stdout: '', stderr: '' }));
  const plan = await withRun(f, (r) => r.plan());
  const p = plan.problems.find((x) => x.path === 'loadBalancer.deploy');
  assert.ok(p);
  assert.match(p.hint!, /install Docker Engine on infra/);
});

test('deploy: docker renders the container files and checks the conf with the image', async (t) => {
  const f = infraFake(seedYaml({ lb: '{kind: nginx, port: 6443, deploy: docker}' }));
  t.after(f.cleanup);
  const infra = f.hosts.get('infra')!;
  infra.handle(/^command -v docker$/, () => ok('/usr/bin/docker\n'));
  infra.handle(/^docker run --rm --network none /, () => ok());
  infra.services.set('k8s-ha-lb', { active: false, enabled: false, restarts: 0, reloads: 0, starts: 0, stops: 0 });
  await withRun(f, (r) => r.apply());
  assert.match(infra.text('/etc/k8s-ha/lb/nginx.conf')!, /user nginx;/);
  assert.match(infra.text('/etc/k8s-ha/lb/compose.yaml')!, /network_mode: host/);
  assert.match(infra.text('/etc/systemd/system/k8s-ha-lb.service')!, /ExecReload=/);
  assert.ok(infra.log.some((c) => /^docker run --rm --network none -v .*nginx\.conf:ro nginx:stable nginx -t$/.test(c)));
  assert.equal(infra.services.get('k8s-ha-lb')!.active, true);
  assert.ok(!infra.packages.has('nginx-light'));
});

test('switching the load balancer from nginx to HAProxy stops the nginx k8s-ha set up before HAProxy starts', async (t) => {
  const f = infraFake(seedYaml());
  t.after(f.cleanup);
  await withRun(f, (r) => r.apply());
  f.write(seedYaml({ lb: '{kind: haproxy, port: 6443}' }));
  const plan = await withRun(f, (r) => r.plan());
  assert.deepEqual(lbSummaries(plan, 'loadbalancer', 'infra'), [
    'install haproxy socat',
    'create /etc/haproxy/haproxy.cfg',
    'enable haproxy',
    // In the change that starts HAProxy, right before it (no interrupt between the two).
    'stop and disable nginx, then at once start haproxy (the load balancer is now haproxy)',
    'disable k8s-ha-lbcheck',
    'stop k8s-ha-lbcheck',
  ]);
  const infra = f.hosts.get('infra')!;
  infra.handle(/^systemctl disable --now nginx$/, () => {
    const s = infra.services.get('nginx')!;
    s.active = false;
    s.enabled = false;
    return ok();
  });
  await withRun(f, (r) => r.apply());
  assert.equal(infra.services.get('nginx')!.active, false);
  assert.equal(infra.services.get('haproxy')!.active, true);
  assert.equal((await withRun(f, (r) => r.plan())).empty, true);
});
