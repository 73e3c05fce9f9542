import type { NodeState } from '../verify/checks.js';

/**
 * What `k8s-ha status` saw, as plain data: collected by collect.ts, judged
 * and formatted here without I/O, so every rule is tested on hand-made
 * snapshots.
 */
export interface HostStatus {
  name: string;
  address: string;
  roles: string[];
  reachable: boolean;
  /** Why not reachable. */
  error?: string;
}

export type UpstreamState = 'up' | 'down' | 'maint' | 'unknown';

export interface UpstreamStatus {
  name: string;
  address: string;
  state: UpstreamState;
  /** HAProxy's status/check text, or the probe's answer. */
  detail: string;
}

export interface LoadBalancerStatus {
  host: string;
  kind: 'nginx' | 'haproxy';
  /** The unit (nginx, haproxy, k8s-ha-lb) active? null when the host was not reachable. */
  active: boolean | null;
  unit: string;
  /**
   * How upstream state was determined: HAProxy's own view through its admin
   * socket, or (nginx OSS has no upstream state API) a probe of each server's
   * 6443 from the LB host.
   */
  method: 'haproxy-admin-socket' | 'probe-from-lb';
  upstreams: UpstreamStatus[];
  error?: string;
}

export interface VipStatus {
  address: string;
  /** LB hosts that have the address on an interface. */
  holders: string[];
  /** LB hosts that could not be asked. */
  unknown: string[];
}

export interface DatastoreStatus {
  host: string;
  active: boolean | null;
  /** MariaDB answered a query. */
  reachable: boolean;
  version: string | null;
  /** Data + index bytes of the k3s database (information_schema). */
  sizeBytes: number | null;
  /** SELECT COUNT(*) FROM kine; null before k3s created the table. */
  kineRows: number | null;
  /** This node's Galera state, when the datastore is Galera and the node answered. */
  galera?: GaleraNodeStatus;
  /** Scheduled backups (datastore.backup), on the host that runs them; absent otherwise. */
  backup?: BackupStatus;
  error?: string;
}

export interface GaleraNodeStatus {
  /** wsrep_cluster_size as this node sees it. */
  size: number;
  /** wsrep_local_state_comment: Synced, Donor/Desynced, Joining, ... */
  state: string;
  /** wsrep_cluster_status: Primary or non-Primary. */
  clusterStatus: string;
  ready: boolean;
}

/** The Galera cluster as a whole (null without Galera). */
export interface GaleraStatus {
  /** Members when all are up: the data nodes and the arbitrator. */
  expectedSize: number;
  /** The node each load balancer sends datastore connections to (its writer table); null: none yet or not asked. */
  writers: { lb: string; writer: string | null; error?: string }[];
}


export interface BackupStatus {
  dir: string;
  /** The newest archive's file name, null when there is none. */
  newest: string | null;
  /** Its age in seconds by the host's clock; with no archive, how long the timer has been installed. */
  ageS: number | null;
  count: number;
  staleAfterS: number;
  /** Older than staleAfter, or none although the timer has been there that long. */
  stale: boolean;
}

export interface KubeStatus {
  /** The server whose API answered; null when none did. */
  via: string | null;
  error?: string;
  nodes: NodeState[];
  /** Hosts that should be nodes (servers + agents). */
  expected: string[];
}

export interface PoolUse {
  name: string;
  /** Addresses in the pool. */
  size: number;
  used: { service: string; ip: string }[];
}

export interface MetallbStatus {
  pools: PoolUse[];
  /** LoadBalancer services without an address yet. */
  pending: string[];
  /** Services with an address outside every pool (another controller?). */
  outside: { service: string; ip: string }[];
  error?: string;
}

export interface StatusSnapshot {
  cluster: string;
  apiServerUrl: string;
  /** ISO time the collection started. */
  at: string;
  ms: number;
  hosts: HostStatus[];
  loadBalancers: LoadBalancerStatus[];
  vip: VipStatus | null;
  datastores: DatastoreStatus[];
  /** Present when the datastore is Galera. */
  galera?: GaleraStatus | null;
  kube: KubeStatus;
  metallb: MetallbStatus | null;
}

/** A lost node, a node not Synced, a lost quorum, or load balancers that disagree on the writer. */
function galeraDegradations(s: StatusSnapshot, g: GaleraStatus): string[] {
  const out: string[] = [];
  // A snapshot from another version may carry a differently shaped section: judge only what is there.
  const writers = Array.isArray(g.writers) ? g.writers : [];
  const answered = s.datastores.filter((d) => d.galera);
  if (answered.length && !answered.some((d) => d.galera!.clusterStatus === 'Primary')) {
    out.push(`Galera has no primary component (quorum lost): writes stop; if every data node is down, \`k8s-ha apply\` bootstraps from the most advanced one`);
  }
  for (const d of answered) {
    const n = d.galera!;
    if (n.clusterStatus !== 'Primary') out.push(`Galera node ${d.host} is outside the primary component (${n.clusterStatus})`);
    else if (n.state !== 'Synced') out.push(`Galera node ${d.host} is ${n.state}, not Synced: it takes no writes`);
  }
  const sizes = answered.filter((d) => d.galera!.clusterStatus === 'Primary').map((d) => d.galera!.size);
  if (sizes.length && typeof g.expectedSize === 'number' && Math.max(...sizes) < g.expectedSize) out.push(`Galera cluster has ${Math.max(...sizes)} of ${g.expectedSize} members: \`k8s-ha apply\` rejoins a stopped node`);
  const named = [...new Set(writers.map((w) => w.writer).filter((w): w is string => w !== null))];
  if (named.length > 1) out.push(`the load balancers send datastore connections to different nodes (${writers.map((w) => `${w.lb}: ${w.writer ?? 'none'}`).join(', ')}): two writers`);
  return out;
}

/**
 * Everything that makes the cluster degraded, each naming what (exit code
 * non-zero when this is not empty). A failover that worked (the VIP on the
 * backup) is not degradation; the stopped primary is, through its own entry.
 */
export function degradations(s: StatusSnapshot): string[] {
  const out: string[] = [];
  for (const h of s.hosts) if (!h.reachable) out.push(`host ${h.name} (${h.address}) unreachable${h.error ? `: ${firstLine(h.error)}` : ''}`);
  for (const lb of s.loadBalancers) {
    if (lb.active === false) out.push(`load balancer on ${lb.host}: ${lb.unit} is not running`);
    if (lb.error && lb.active !== null) out.push(`load balancer on ${lb.host}: ${firstLine(lb.error)}`);
    // An unreachable or stopped LB is named above; its upstreams were not asked.
    for (const u of lb.upstreams) if (u.state !== 'up' && lb.active === true) out.push(`load balancer on ${lb.host}: upstream ${u.name} is ${u.state}${u.detail ? ` (${u.detail})` : ''}`);
  }
  if (s.vip) {
    if (s.vip.holders.length === 0) out.push(`virtual IP ${s.vip.address} is held by no load balancer${s.vip.unknown.length ? ` that answered (not asked: ${s.vip.unknown.join(', ')})` : ''}`);
    if (s.vip.holders.length > 1) out.push(`virtual IP ${s.vip.address} is held by ${s.vip.holders.join(' and ')} at once (split brain: check VRRP between them)`);
  }
  for (const d of s.datastores) {
    if (d.backup?.stale) {
      const b = d.backup;
      out.push(b.newest ? `datastore on ${d.host}: the newest scheduled backup is ${formatAge(b.ageS ?? 0)} old (stale after ${formatAge(b.staleAfterS)}): look at \`journalctl -u k8s-ha-backup\`` : `datastore on ${d.host}: no scheduled backup in ${b.dir} although the timer was installed ${formatAge(b.ageS ?? 0)} ago: look at \`journalctl -u k8s-ha-backup\``);
    }
    if (d.active === false) out.push(`datastore on ${d.host}: mariadb is not running`);
    else if (!d.reachable) out.push(`datastore on ${d.host}: not answering${d.error ? ` (${firstLine(d.error)})` : ''}`);
  }
  if (s.galera) out.push(...galeraDegradations(s, s.galera));
  if (!s.kube.via) out.push(`Kubernetes API answers on no server${s.kube.error ? ` (${firstLine(s.kube.error)})` : ''}`);
  else {
    const byName = new Map(s.kube.nodes.map((n) => [n.name, n]));
    for (const e of s.kube.expected) {
      const n = byName.get(e);
      if (!n) out.push(`node ${e} has not joined`);
      else if (!n.ready) out.push(`node ${e} is not Ready (${n.why})`);
    }
  }
  if (s.metallb) {
    if (s.metallb.error) out.push(`MetalLB: ${firstLine(s.metallb.error)}`);
    for (const p of s.metallb.pools) if (p.size > 0 && p.used.length >= p.size) out.push(`MetalLB pool ${p.name} is full (${p.used.length}/${p.size}): new LoadBalancer Services get no address`);
    for (const o of s.metallb.outside) out.push(`MetalLB: ${o.service} has ${o.ip}, outside every pool (is servicelb or another controller running?)`);
  }
  return out;
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));

/** The one screen: hosts, load balancers and upstreams, VIP, datastore, nodes, MetalLB, then what is degraded. */
export function formatStatus(s: StatusSnapshot, o: { color?: boolean } = {}): string {
  const bad = (t: string) => (o.color ? `\x1b[31m${t}\x1b[0m` : t);
  const good = (t: string) => (o.color ? `\x1b[32m${t}\x1b[0m` : t);
  const L: string[] = [];
  L.push(`Cluster ${s.cluster} (API ${s.apiServerUrl}) at ${s.at}, collected in ${(s.ms / 1000).toFixed(1)} s`);
  L.push('', 'Hosts');
  const w = Math.max(...s.hosts.map((h) => h.name.length), 4) + 2;
  for (const h of s.hosts) L.push(`  ${pad(h.name, w)}${pad(h.address, 17)}${pad(h.roles.join(','), 32)}${h.reachable ? good('reachable') : bad(`UNREACHABLE${h.error ? `: ${firstLine(h.error)}` : ''}`)}`);

  L.push('', 'Load balancer');
  for (const lb of s.loadBalancers) {
    const how = lb.method === 'haproxy-admin-socket' ? 'as HAProxy sees them (admin socket)' : "probed from the LB host (nginx open source has no upstream state API)";
    const state = lb.active === null ? bad('not reachable') : lb.active ? good(`${lb.unit} running`) : bad(`${lb.unit} NOT running`);
    L.push(`  ${lb.host}: ${lb.kind}, ${state}; upstreams ${how}`);
    if (lb.error) L.push(`    ${bad(firstLine(lb.error))}`);
    for (const u of lb.upstreams) L.push(`    ${pad(u.name, w)}${pad(u.address, 17)}${u.state === 'up' ? good('up') : bad(u.state.toUpperCase())}${u.detail ? `  ${u.detail}` : ''}`);
  }
  if (s.vip) {
    const holder = s.vip.holders.length === 1 ? good(s.vip.holders[0]!) : bad(s.vip.holders.length ? s.vip.holders.join(' + ') : 'nobody');
    L.push(`  virtual IP ${s.vip.address}: held by ${holder}${s.vip.unknown.length ? ` (not asked: ${s.vip.unknown.join(', ')})` : ''}`);
  }

  L.push('', 'Datastore');
  for (const d of s.datastores) {
    if (!d.reachable) {
      L.push(`  ${d.host}: ${bad(d.active === false ? 'mariadb NOT running' : 'not answering')}${d.error ? `  ${firstLine(d.error)}` : ''}`);
      continue;
    }
    const rows = d.kineRows === null ? 'no kine table yet' : `${d.kineRows} kine rows`;
    const gn = d.galera;
    const galera = gn ? `, Galera ${gn.state === 'Synced' && gn.clusterStatus === 'Primary' ? good(`${gn.state} ${gn.clusterStatus}`) : bad(`${gn.state} ${gn.clusterStatus}`)} (size ${gn.size})` : '';
    const writer = Array.isArray(s.galera?.writers) && s.galera.writers.some((w) => w.writer === d.host) ? ', the writer' : '';
    L.push(`  ${d.host}: ${good('answering')}, MariaDB ${d.version ?? '?'}, ${d.sizeBytes === null ? '?' : formatBytes(d.sizeBytes)}, ${rows}${galera}${writer}`);
    if (d.backup) {
      const b = d.backup;
      const what = b.newest ? `newest ${formatAge(b.ageS ?? 0)} old, ${b.count} kept in ${b.dir}` : `none yet in ${b.dir}`;
      L.push(`    scheduled backups: ${b.stale ? bad(what) : good(what)}`);
    }
  }
  if (s.galera && Array.isArray(s.galera.writers)) {
    L.push(`  Galera: ${s.galera.expectedSize} members expected; writer by load balancer: ${s.galera.writers.map((w) => `${w.lb} -> ${w.writer ?? 'none yet'}`).join(', ')}`);
  }

  L.push('', 'Nodes');
  if (!s.kube.via) L.push(`  ${bad('the API answers on no server')}${s.kube.error ? `: ${firstLine(s.kube.error)}` : ''}`);
  else {
    L.push(`  (asked ${s.kube.via})`);
    const names = [...new Set([...s.kube.expected, ...s.kube.nodes.map((n) => n.name)])];
    for (const name of names) {
      const n = s.kube.nodes.find((x) => x.name === name);
      if (!n) L.push(`  ${pad(name, w)}${bad('NOT JOINED')}`);
      else L.push(`  ${pad(name, w)}${pad(n.ready ? good('Ready') : bad('NotReady'), o.color ? 19 : 10)}${pad(n.kubeletVersion, 22)}${n.roles.join(',')}${n.simulated ? '  (simulated by kwok)' : ''}${n.ready ? '' : `  ${n.why}`}`);
    }
  }

  if (s.metallb) {
    L.push('', 'MetalLB');
    if (s.metallb.error) L.push(`  ${bad(firstLine(s.metallb.error))}`);
    for (const p of s.metallb.pools) L.push(`  pool ${p.name}: ${p.used.length}/${p.size} used${p.used.length ? `: ${p.used.map((u) => `${u.service}=${u.ip}`).join(', ')}` : ''}`);
    if (s.metallb.pending.length) L.push(`  pending (no address yet): ${s.metallb.pending.join(', ')}`);
    for (const x of s.metallb.outside) L.push(`  ${bad(`${x.service}=${x.ip} outside every pool`)}`);
  }

  const d = degradations(s);
  L.push('');
  if (d.length) {
    L.push(bad(`DEGRADED (${d.length}):`));
    for (const x of d) L.push(`  - ${x}`);
  } else L.push(good('Healthy: every host, upstream, the datastore and every node are up.'));
  return L.join('\n') + '\n';
}

export function statusToJSON(s: StatusSnapshot): Record<string, unknown> {
  const d = degradations(s);
  return { ...s, healthy: d.length === 0, degraded: d };
}

/** How many addresses a pool holds (ranges and CIDRs; IPv6 capped at 2^53). */
export function poolSize(addresses: readonly string[]): number {
  let n = 0;
  for (const a of addresses) {
    const range = /^\s*(\d+\.\d+\.\d+\.\d+)\s*-\s*(\d+\.\d+\.\d+\.\d+)\s*$/.exec(a);
    const cidr = /^([^/]+)\/(\d+)$/.exec(a);
    if (range) n += v4(range[2]!) - v4(range[1]!) + 1;
    else if (cidr) n += 2 ** Math.min((cidr[1]!.includes(':') ? 128 : 32) - Number(cidr[2]), 53);
  }
  return Math.min(n, Number.MAX_SAFE_INTEGER);
}

const v4 = (ip: string): number => ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);

/** 42s, 17m, 5h, 3d. */
export function formatAge(s: number): string {
  if (s < 120) return `${Math.round(s)}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}
