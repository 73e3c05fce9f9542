import type { Deployment } from '../cluster/deployment.js';
import { hostKubectl, type KubeItem, type KubeList } from '../kube/kubectl-host.js';
import { MARIADB_BATCH } from '../phases/infra-mariadb.js';
import { apiUpstreams, K3S_API_PORT } from '../phases/infra-common.js';
import { lbUnit } from '../phases/loadbalancer.js';
import { READ_NODE, parseNodeRead } from '../phases/galera-state.js';
import { writersByLoadBalancer } from '../phases/galera-writer.js';
import { HAPROXY_ADMIN_SOCKET, HAPROXY_BACKEND } from '../render/haproxy.js';
import { sqlString } from '../render/mariadb.js';
import { datastoreEndpointHost, type Cluster } from '../spec/cluster.js';
import { BACKUP_TIMER_PATH } from '../render/backup-timer.js';
import { ARCHIVE_SUFFIX } from '../backup/manifest.js';
import type { Host } from '../transport/host.js';
import { parseServiceState, serviceState } from '../transport/os.js';
import { sh } from '../transport/quote.js';
import { expectedNodes, ingressAddress, nodeStates, poolOf } from '../verify/checks.js';
import {
  poolSize,
  type BackupStatus,
  type DatastoreStatus,
  type GaleraStatus,
  type HostStatus,
  type KubeStatus,
  type LoadBalancerStatus,
  type MetallbStatus,
  type StatusSnapshot,
  type UpstreamStatus,
  type VipStatus,
} from './model.js';

/**
 * The collectors of `k8s-ha status`: each asks one kind of host over the
 * Host transport (so MemoryHosts answer them in tests) and returns plain
 * data for model.ts. They only read; a collector's failure is reported in
 * its part of the snapshot, never thrown, so one dead host does not hide the
 * rest of the screen.
 */
export interface StatusOptions {
  deployment: Deployment;
  /** A connected host by name; rejects when it cannot be reached. */
  host(name: string): Promise<Host>;
  now?: () => Date;
  /**
   * How long a host may take to connect and answer `true` (default 10000), and
   * each upstream probe from an LB host (default 3000). The live page uses
   * shorter ones: a frozen host must not hold a refresh for 10 s.
   */
  timeouts?: { hostMs?: number; probeMs?: number };
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const withRole = (c: Cluster, role: string) => c.hosts.filter((h) => h.roles.includes(role as never));

async function unitActive(h: Host, unit: string): Promise<boolean> {
  const r = await h.exec(serviceState([unit]), { allowFailure: true, timeoutMs: 15_000 });
  return parseServiceState(r.stdout, [unit]).get(unit)?.active ?? false;
}

/** HAProxy `show stat` CSV -> the backend's servers with HAProxy's status and last check. */
export function parseHaproxyStat(csv: string, backend: string): { name: string; status: string; check: string; addr: string }[] {
  const lines = csv.split('\n').filter((l) => l.trim());
  const header = lines.find((l) => l.startsWith('# '))?.slice(2).split(',') ?? [];
  const col = (name: string) => header.indexOf(name);
  const out: { name: string; status: string; check: string; addr: string }[] = [];
  for (const l of lines) {
    if (l.startsWith('#')) continue;
    const f = l.split(',');
    if (f[col('pxname')] !== backend) continue;
    const sv = f[col('svname')] ?? '';
    if (sv === 'FRONTEND' || sv === 'BACKEND') continue;
    out.push({ name: sv, status: f[col('status')] ?? '', check: [f[col('check_status')], f[col('last_chk')]].filter(Boolean).join(' '), addr: col('addr') >= 0 ? (f[col('addr')] ?? '') : '' });
  }
  return out;
}

/** HAProxy status words: UP, UP 1/2 (going down), DOWN, DOWN 1/2 (coming up), MAINT, DRAIN, no check. */
export function haproxyState(status: string): UpstreamStatus['state'] {
  // `UP 1/2` is still serving (one check failed so far): up until HAProxy says DOWN.
  if (/^UP\b/.test(status) || status === 'no check' || status === 'OPEN') return 'up';
  if (/^DOWN\b/.test(status) || status === 'NOLB') return 'down';
  if (/^MAINT|^DRAIN/.test(status)) return 'maint';
  return 'unknown';
}

/** `show stat` through the admin socket, with whichever client the LB host has (socat, nc -U, python3). */
export function haproxyShowStat(): ReturnType<typeof sh> {
  const py = `import socket,sys\ns=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);s.sendall(b"show stat\\n");b=b""\nwhile True:\n  d=s.recv(65536)\n  if not d: break\n  b+=d\nsys.stdout.write(b.decode())`;
  return sh`if command -v socat >/dev/null 2>&1; then printf 'show stat\n' | socat -t 2 - UNIX-CONNECT:${HAPROXY_ADMIN_SOCKET}; elif command -v python3 >/dev/null 2>&1; then python3 -c ${py} ${HAPROXY_ADMIN_SOCKET}; elif nc -h 2>&1 | grep -q -- -U; then printf 'show stat\n' | nc -U -w 2 ${HAPROXY_ADMIN_SOCKET}; else echo 'no client for the HAProxy admin socket: install socat on this host' >&2; exit 3; fi`;
}

/**
 * Each upstream's 6443 probed from the LB host: `/ping` answers `pong`
 * without credentials (FACTS: k3s health), which is as close as nginx open
 * source lets anyone get to its own view (it has passive checks only).
 */
export function upstreamProbe(addresses: readonly string[], port = K3S_API_PORT, maxSeconds = 3): ReturnType<typeof sh> {
  const max = String(maxSeconds);
  return sh`for a in ${addresses}; do if command -v curl >/dev/null 2>&1; then r=$(curl -ksS --max-time ${max} "https://$a:"${port}/ping 2>&1); if [ "$r" = pong ]; then s=up; else s=down; fi; elif timeout ${max} bash -c "exec 3<>/dev/tcp/$a/"${port} 2>/dev/null; then s=up; r='TCP connect ok'; else s=down; r='TCP connect failed'; fi; printf '%s\t%s\t%s\n' "$a" "$s" "$(printf %s "$r" | tr '\n\t' '  ' | cut -c1-120)"; done`;
}

export function parseUpstreamProbe(stdout: string): Map<string, { state: 'up' | 'down'; detail: string }> {
  const m = new Map<string, { state: 'up' | 'down'; detail: string }>();
  for (const line of stdout.split('\n')) {
    const [addr, state, detail = ''] = line.split('\t');
    if (addr && (state === 'up' || state === 'down')) m.set(addr, { state, detail: detail.trim() === 'pong' ? '/ping: pong' : detail.trim() });
  }
  return m;
}

export async function collectLoadBalancer(c: Cluster, name: string, h: Host | null, hostError?: string, probeMs = 3000): Promise<LoadBalancerStatus> {
  const kind = c.loadBalancer.kind;
  const unit = lbUnit(c);
  const method = kind === 'haproxy' && c.loadBalancer.deploy === 'package' ? 'haproxy-admin-socket' : 'probe-from-lb';
  const ups = apiUpstreams(c);
  const base: LoadBalancerStatus = { host: name, kind, unit, active: null, method, upstreams: ups.map((u) => ({ name: u.name, address: u.address, state: 'unknown', detail: '' })) };
  if (!h) return { ...base, error: hostError ?? 'not reachable' };
  try {
    const active = await unitActive(h, unit);
    if (!active) return { ...base, active };
    if (method === 'haproxy-admin-socket') {
      const r = await h.exec(haproxyShowStat(), { allowFailure: true, timeoutMs: 15_000 });
      if (r.code !== 0) return { ...base, active, error: `reading ${HAPROXY_ADMIN_SOCKET}: ${r.stderr.trim() || `exit ${r.code}`}` };
      const rows = parseHaproxyStat(r.stdout, HAPROXY_BACKEND);
      return {
        ...base,
        active,
        upstreams: ups.map((u) => {
          const row = rows.find((x) => x.name === u.name);
          return row ? { name: u.name, address: u.address, state: haproxyState(row.status), detail: `${row.status}${row.check ? `, check ${row.check}` : ''}` } : { name: u.name, address: u.address, state: 'unknown', detail: `not in backend ${HAPROXY_BACKEND}` };
        }),
      };
    }
    // Upstreams are probed one after another (one command): a frozen one costs probeMs.
    const r = await h.exec(upstreamProbe(ups.map((u) => u.address), K3S_API_PORT, probeMs / 1000), { allowFailure: true, timeoutMs: 15_000 + (probeMs + 1000) * ups.length });
    const probed = parseUpstreamProbe(r.stdout);
    return { ...base, active, upstreams: ups.map((u) => ({ name: u.name, address: u.address, ...(probed.get(u.address) ?? { state: 'unknown' as const, detail: r.stderr.trim().split('\n')[0] ?? '' }) })) };
  } catch (e) {
    return { ...base, error: errText(e) };
  }
}

/** Who has the virtual IP: `ip -o addr show` on each LB host. */
export async function collectVip(address: string, lbs: { name: string; host: Host | null }[]): Promise<VipStatus> {
  const holders: string[] = [];
  const unknown: string[] = [];
  await Promise.all(
    lbs.map(async ({ name, host }) => {
      if (!host) return void unknown.push(name);
      try {
        const r = await host.exec(sh`ip -o addr show`, { sudo: false, timeoutMs: 15_000 });
        if (r.stdout.split('\n').some((l) => l.split(/\s+/).some((w) => w === address || w.startsWith(`${address}/`)))) holders.push(name);
      } catch {
        unknown.push(name);
      }
    }),
  );
  return { address, holders: holders.sort(), unknown: unknown.sort() };
}

/**
 * Size and kine rows, as root over MariaDB's local socket (Debian's
 * root@localhost uses unix_socket authentication): no password exists to put
 * anywhere, and the SQL goes on stdin, never on the command line.
 */
export async function collectDatastore(c: Cluster, name: string, h: Host | null, hostError?: string): Promise<DatastoreStatus> {
  const base: DatastoreStatus = { host: name, active: null, reachable: false, version: null, sizeBytes: null, kineRows: null };
  if (!h) return { ...base, error: hostError ?? 'not reachable' };
  try {
    const active = await unitActive(h, 'mariadb');
    if (!active) return { ...base, active };
    const db = sqlString(c.datastore.database);
    const r = await h.exec(MARIADB_BATCH, {
      stdin: `SELECT 'version', VERSION();\nSELECT 'size', COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${db};\nSELECT 'kine', COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${db} AND TABLE_NAME = 'kine';\n`,
      allowFailure: true,
      timeoutMs: 20_000,
    });
    if (r.code !== 0) return { ...base, active, error: r.stderr.trim() || `mariadb exited ${r.code}` };
    const kv = new Map(r.stdout.split('\n').map((l) => l.split('\t') as [string, string]));
    let kineRows: number | null = null;
    if (kv.get('kine') === '1') {
      // Backquoted identifier: the database name comes from the cluster file (a DNS-ish name, checked by the schema).
      const q = await h.exec(MARIADB_BATCH, { stdin: `SELECT COUNT(*) FROM \`${c.datastore.database.replace(/`/g, '``')}\`.kine;\n`, allowFailure: true, timeoutMs: 30_000 });
      if (q.code === 0) kineRows = Number(q.stdout.trim());
    }
    const backup = c.datastore.backup && datastoreEndpointHost(c)?.name === name ? await collectBackup(c, h) : undefined;
    let galera: DatastoreStatus['galera'];
    if (c.datastore.galera) {
      const v = parseNodeRead(name, (await h.exec(READ_NODE, { allowFailure: true, timeoutMs: 20_000 })).stdout);
      const st = v.status;
      if (st) galera = { size: Number(st.get('wsrep_cluster_size') ?? 0), state: st.get('wsrep_local_state_comment') ?? '?', clusterStatus: st.get('wsrep_cluster_status') ?? '?', ready: st.get('wsrep_ready') === 'ON' };
    }
    return { ...base, active, reachable: true, version: kv.get('version') ?? null, sizeBytes: kv.has('size') ? Number(kv.get('size')) : null, kineRows, ...(galera ? { galera } : {}), ...(backup ? { backup } : {}) };
  } catch (e) {
    return { ...base, error: errText(e) };
  }
}

/** Nodes (Ready, k3s version) and MetalLB pool use, asked from the first server whose API answers. */
export async function collectKube(c: Cluster, servers: { name: string; host: Host | null | Promise<Host | null> }[]): Promise<{ kube: KubeStatus; metallb: MetallbStatus | null }> {
  const expected = expectedNodes(c);
  const why: string[] = [];
  for (const s of servers) {
    // The first server that answers is asked; a later one's answer is not waited for.
    const host = await s.host;
    if (!host) {
      why.push(`${s.name}: not reachable`);
      continue;
    }
    const k = hostKubectl(host);
    try {
      const nodes = nodeStates((await k.json<KubeList>(['--request-timeout=5s', 'get', 'nodes'], { timeoutMs: 20_000 })).items);
      const kube: KubeStatus = { via: s.name, nodes, expected };
      if (!c.metallb) return { kube, metallb: null };
      const pools = c.metallb.pools;
      const metallb: MetallbStatus = { pools: pools.map((p) => ({ name: p.name, size: poolSize(p.addresses), used: [] })), pending: [], outside: [] };
      try {
        const svcs = (await k.json<KubeList>(['--request-timeout=5s', 'get', 'services', '--all-namespaces'], { timeoutMs: 20_000 })).items.filter((x: KubeItem) => x.spec?.type === 'LoadBalancer');
        for (const svc of svcs) {
          const id = `${svc.metadata.namespace}/${svc.metadata.name}`;
          const ip = ingressAddress(svc);
          if (!ip) metallb.pending.push(id);
          else {
            const pool = poolOf(ip, pools);
            if (pool) metallb.pools.find((p) => p.name === pool)!.used.push({ service: id, ip });
            else metallb.outside.push({ service: id, ip });
          }
        }
      } catch (e) {
        metallb.error = `listing Services: ${errText(e)}`;
      }
      return { kube, metallb };
    } catch (e) {
      why.push(`${s.name}: ${errText(e).trim().split('\n').pop()}`);
    }
  }
  return { kube: { via: null, nodes: [], expected, error: why.join('; ') }, metallb: c.metallb ? { pools: [], pending: [], outside: [], error: 'not read: the API answers on no server' } : null };
}

/** One status snapshot of the whole cluster; every host asked at once. */
export async function collectStatus(o: StatusOptions): Promise<StatusSnapshot> {
  const c = o.deployment.spec;
  const t0 = Date.now();
  const at = (o.now ?? (() => new Date()))().toISOString();
  const hostMs = o.timeouts?.hostMs ?? 10_000;
  // Each collector starts as soon as its own hosts answer: a frozen host costs
  // the parts that need it hostMs, not the whole round hostMs first.
  type Reached = { host: Host | null; error?: string };
  const reached = new Map<string, Promise<Reached>>(
    c.hosts.map((h) => {
      let timer: NodeJS.Timeout | undefined;
      // Connecting to a machine that is off waits for SSH's own timeout (20 s): bounded here.
      const p = Promise.race([
        (async () => {
          const host = await o.host(h.name);
          // A cached connection may be dead (machine stopped since): ask something.
          await host.exec(sh`true`, { sudo: false, timeoutMs: hostMs, allowFailure: true });
          return { host } as Reached;
        })(),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer over SSH within ${hostMs / 1000} s`)), hostMs + 500))),
      ])
        .catch((e: unknown): Reached => ({ host: null, error: errText(e) }))
        .finally(() => clearTimeout(timer));
      return [h.name, p];
    }),
  );
  const reach = (name: string): Promise<Reached> => reached.get(name) ?? Promise.resolve({ host: null });
  const lbHosts = withRole(c, 'loadbalancer');
  const vipAddr = c.loadBalancer.virtualIP?.address;
  const [hosts, loadBalancers, vip, datastores, k] = await Promise.all([
    Promise.all(
      c.hosts.map(async (h): Promise<HostStatus> => {
        const r = await reach(h.name);
        return { name: h.name, address: h.address, roles: [...h.roles], reachable: r.host !== null, ...(r.host ? {} : { error: r.error ?? 'not reachable' }) };
      }),
    ),
    Promise.all(lbHosts.map(async (h) => {
      const r = await reach(h.name);
      return collectLoadBalancer(c, h.name, r.host, r.error, o.timeouts?.probeMs);
    })),
    vipAddr ? Promise.all(lbHosts.map(async (h) => ({ name: h.name, host: (await reach(h.name)).host }))).then((lbs) => collectVip(vipAddr, lbs)) : Promise.resolve(null),
    Promise.all(withRole(c, 'datastore').map(async (h) => {
      const r = await reach(h.name);
      return collectDatastore(c, h.name, r.host, r.error);
    })),
    collectKube(c, withRole(c, 'server').map((h) => ({ name: h.name, host: reach(h.name).then((r) => r.host) }))),
  ]);
  let galera: GaleraStatus | null = null;
  const g = c.datastore.galera;
  if (g) {
    const writers = await writersByLoadBalancer(c, async (n) => {
      const x = await reach(n);
      if (!x.host) throw new Error(x.error ?? 'not reachable');
      return x.host;
    });
    galera = { expectedSize: withRole(c, 'datastore').length + (g.arbitrator !== undefined ? 1 : 0), writers };
  }
  return { cluster: c.name, apiServerUrl: c.apiServerUrl, at, ms: Date.now() - t0, hosts, loadBalancers, vip, datastores, ...(galera ? { galera } : {}), kube: k.kube, metallb: k.metallb };
}

/** The scheduled backups' folder: the newest archive by its UTC stamp, against the host's clock. */
export async function collectBackup(c: Cluster, h: Host): Promise<BackupStatus | undefined> {
  const b = c.datastore.backup;
  if (!b) return undefined;
  const r = await h.exec(sh`date +%s; stat -c %Y ${BACKUP_TIMER_PATH} 2>/dev/null || echo none; ls -1 ${b.dir} 2>/dev/null || true`, { allowFailure: true, timeoutMs: 20_000 });
  const [now = '', installed = '', ...names] = r.stdout.split('\n');
  const re = new RegExp(`^${c.name.replace(/[.+]/g, '\\$&')}-(\\d{4})(\\d{2})(\\d{2})T(\\d{2})(\\d{2})(\\d{2})Z${ARCHIVE_SUFFIX.replace(/\./g, '\\.')}$`);
  const archives = names.filter((n) => re.test(n)).sort().reverse();
  const nowS = Number(now);
  const staleAfterS = Math.round(b.staleAfterMs / 1000);
  const newest = archives[0] ?? null;
  let ageS: number | null = null;
  if (newest) {
    const m = re.exec(newest)!;
    ageS = nowS - Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) / 1000;
  } else if (/^\d+$/.test(installed)) ageS = nowS - Number(installed);
  return { dir: b.dir, newest, ageS, count: archives.length, staleAfterS, stale: ageS !== null && Number.isFinite(ageS) && ageS > staleAfterS };
}
