import { degradations, formatAge, formatBytes, type DatastoreStatus, type LoadBalancerStatus, type StatusSnapshot } from '../model.js';

/**
 * The status page's view of one snapshot (pure: no I/O, no clock): the
 * topology as elements in tiers (clients -> virtual IP -> load balancers ->
 * servers -> datastore -> agents) with a health and the reason for it, the
 * edges between them, MetalLB pools, versions, and every part of the
 * snapshot the page has no picture for as a generic section, so a section
 * added to the status model shows up on the page without a page change.
 */
export type Health = 'ok' | 'warn' | 'bad' | 'unknown';

export type Tier = 'clients' | 'vip' | 'lb' | 'server' | 'datastore' | 'agent';

export const TIERS: readonly { tier: Tier; title: string }[] = [
  { tier: 'clients', title: 'Clients' },
  { tier: 'vip', title: 'Virtual IP' },
  { tier: 'lb', title: 'Load balancers' },
  { tier: 'server', title: 'k3s servers' },
  { tier: 'datastore', title: 'Datastore' },
  { tier: 'agent', title: 'k3s agents' },
];

export interface PageElement {
  /** Stable across snapshots (the timeline compares by it): `lb:lb1`, `server:server2`, `vip`. */
  id: string;
  tier: Tier;
  label: string;
  /** One short line under the label: address, version. */
  sub: string;
  health: Health;
  /** Why this health, in a sentence (the hover/tap text). */
  reason: string;
  /** Shown in the details panel, in order. */
  facts: [string, string][];
}

export interface PageEdge {
  from: string;
  to: string;
  health: Health;
  /** Why, for the edge's tooltip (an upstream's state as the LB sees it). */
  reason: string;
  /** The upstream's own words (HAProxy's check, the probe's answer), for the timeline. */
  detail?: string;
  /** Drawn dashed: a standby path (the VIP's backup), or a join path. */
  standby?: boolean;
}

export interface PoolView {
  name: string;
  used: number;
  size: number;
  services: string[];
  health: Health;
}

/** A part of the snapshot the page draws no picture for, rendered as data. */
export interface GenericSection {
  key: string;
  title: string;
  value: unknown;
}

export interface PageModel {
  cluster: string;
  apiServerUrl: string;
  at: string;
  ms: number;
  healthy: boolean;
  /** The same list as `status --json`'s `degraded` (model.ts degradations). */
  degraded: string[];
  elements: PageElement[];
  edges: PageEdge[];
  /** Who holds the virtual IP when exactly one does; null otherwise or without a VIP. */
  vipHolder: string | null;
  /** Galera: the node the load balancers send writes to, when they agree on one. */
  dbWriter: string | null;
  /** A short line beside a tier's title (the agents' join path, Galera's membership). */
  notes: Partial<Record<Tier, string>>;
  pools: PoolView[];
  pending: string[];
  versions: [string, string][];
  extra: GenericSection[];
}

/** What the page knows besides the snapshot: the versions the cluster file asks for. */
export interface PageContext {
  desired?: { k3s?: string; metallb?: string };
}

/** Top-level snapshot keys drawn in the picture or the fixed sections; any other key is a generic section. */
const DRAWN = new Set(['cluster', 'apiServerUrl', 'at', 'ms', 'hosts', 'loadBalancers', 'vip', 'datastores', 'kube', 'metallb']);
/** Datastore fields shown by name; others (added later to the model) are listed as facts. */
const DATASTORE_KNOWN = new Set(['host', 'active', 'reachable', 'version', 'sizeBytes', 'kineRows', 'error', 'backup', 'galera']);

const firstLine = (s: string | undefined): string => (s ?? '').trim().split('\n')[0] ?? '';
const worst = (hs: Health[]): Health => (hs.includes('bad') ? 'bad' : hs.includes('warn') ? 'warn' : hs.includes('unknown') ? 'unknown' : 'ok');

export const HEALTH_WORD: Record<Health, string> = { ok: 'healthy', warn: 'degraded', bad: 'down', unknown: 'unknown' };

export function pageModel(s: StatusSnapshot, ctx: PageContext = {}): PageModel {
  const degraded = degradations(s);
  const els: PageElement[] = [];
  const edges: PageEdge[] = [];
  const hostOf = new Map(s.hosts.map((h) => [h.name, h]));
  const nodeOf = new Map(s.kube.nodes.map((n) => [n.name, n]));
  const unreachable = (name: string): string | null => {
    const h = hostOf.get(name);
    return h && !h.reachable ? `host unreachable${h.error ? `: ${firstLine(h.error)}` : ''}` : null;
  };

  // Clients: kubectl and the agents reach the API through the VIP or the LB.
  els.push({
    id: 'clients',
    tier: 'clients',
    label: 'API clients',
    sub: `→ ${s.apiServerUrl.replace(/^https?:\/\//, '')}`,
    health: s.kube.via ? 'ok' : 'bad',
    reason: s.kube.via ? `the API answers (asked on ${s.kube.via})` : `the Kubernetes API answers on no server${s.kube.error ? `: ${firstLine(s.kube.error)}` : ''}`,
    facts: [['API server URL', s.apiServerUrl], ['answered on', s.kube.via ?? 'no server']],
  });

  let vipHolder: string | null = null;
  if (s.vip) {
    const v = s.vip;
    vipHolder = v.holders.length === 1 ? v.holders[0]! : null;
    const reason =
      v.holders.length === 1
        ? `held by ${v.holders[0]}`
        : v.holders.length === 0
          ? `held by no load balancer${v.unknown.length ? ` that answered (not asked: ${v.unknown.join(', ')})` : ''}`
          : `held by ${v.holders.join(' and ')} at once: split brain, check VRRP between them`;
    els.push({ id: 'vip', tier: 'vip', label: v.address, sub: vipHolder ? `on ${vipHolder}` : v.holders.length ? 'split brain' : 'nowhere', health: vipHolder ? 'ok' : 'bad', reason, facts: [['address', v.address], ['holder', v.holders.join(', ') || 'none'], ...(v.unknown.length ? [['not asked', v.unknown.join(', ')] as [string, string]] : [])] });
    edges.push({ from: 'clients', to: 'vip', health: vipHolder ? 'ok' : 'bad', reason });
  }

  for (const lb of s.loadBalancers) {
    const id = `lb:${lb.host}`;
    const { health, reason } = judgeLb(lb, unreachable(lb.host));
    const addr = hostOf.get(lb.host)?.address ?? '';
    els.push({
      id,
      tier: 'lb',
      label: lb.host,
      sub: `${lb.kind}${s.vip ? (vipHolder === lb.host ? ' · VIP' : ' · standby') : ''}`,
      health,
      reason,
      facts: [['address', addr], ['kind', lb.kind], ['unit', `${lb.unit}: ${lb.active === null ? 'not asked' : lb.active ? 'running' : 'not running'}`], ['upstream view', lb.method === 'haproxy-admin-socket' ? "HAProxy's own (admin socket)" : 'probed from this host (nginx has no upstream state API)'], ...lb.upstreams.map((u) => [`upstream ${u.name}`, `${u.state}${u.detail ? ` (${u.detail})` : ''}`] as [string, string])],
    });
    if (s.vip) {
      const holds = s.vip.holders.includes(lb.host);
      edges.push({ from: 'vip', to: id, health: holds ? health : 'unknown', reason: holds ? `${lb.host} holds the VIP` : `${lb.host} is the standby`, standby: !holds });
    } else edges.push({ from: 'clients', to: id, health, reason });
    for (const u of lb.upstreams) {
      // Upstreams of a stopped or unreachable LB were not asked: unknown, not down.
      const h: Health = lb.active !== true ? 'unknown' : u.state === 'up' ? 'ok' : u.state === 'unknown' ? 'unknown' : 'bad';
      edges.push({ from: id, to: `server:${u.name}`, health: h, reason: lb.active !== true ? `${lb.host} not serving` : `${lb.host} sees ${u.name} ${u.state}${u.detail ? ` (${u.detail})` : ''}`, ...(u.detail ? { detail: u.detail } : {}) });
    }
  }

  const servers = s.hosts.filter((h) => h.roles.includes('server'));
  const agents = s.hosts.filter((h) => h.roles.includes('agent') && !h.roles.includes('server'));
  for (const [tier, list] of [['server', servers], ['agent', agents]] as const) {
    for (const h of list) {
      const problems: string[] = [];
      const down = unreachable(h.name);
      if (down) problems.push(down);
      const n = nodeOf.get(h.name);
      if (s.kube.via) {
        if (!n) problems.push('has not joined (no Node object)');
        else if (!n.ready) problems.push(`node NotReady (${n.why})`);
      }
      const seenDown = tier === 'server' ? s.loadBalancers.filter((lb) => lb.active === true && lb.upstreams.some((u) => u.name === h.name && u.state !== 'up')).map((lb) => lb.host) : [];
      if (seenDown.length) problems.push(`upstream down on ${seenDown.join(', ')}`);
      const health: Health = down || (n && !n.ready) || (s.kube.via && !n) ? 'bad' : seenDown.length ? (seenDown.length === s.loadBalancers.length ? 'bad' : 'warn') : s.kube.via ? 'ok' : 'unknown';
      els.push({
        id: `${tier}:${h.name}`,
        tier,
        label: h.name,
        sub: n?.kubeletVersion || h.address,
        health,
        reason: problems.length ? problems.join('; ') : s.kube.via ? `node Ready${n?.simulated ? ' (simulated by kwok)' : ''}` : 'node state unknown: the API answers on no server',
        facts: [['address', h.address], ['roles', h.roles.join(', ')], ['node', n ? (n.ready ? 'Ready' : `NotReady: ${n.why}`) : s.kube.via ? 'not joined' : 'unknown'], ...(n ? [['version', n.kubeletVersion] as [string, string]] : []), ...(n?.simulated ? [['kubelet', 'simulated by kwok (the lab)'] as [string, string]] : [])],
      });
    }
  }

  // Galera: writes go through the load balancers to one node (their writer table).
  const writers = [...new Set((Array.isArray(s.galera?.writers) ? s.galera.writers : []).map((w) => w.writer).filter((w): w is string => w !== null))];
  const dbWriter = writers.length === 1 ? writers[0]! : null;
  for (const d of s.datastores) {
    const id = `datastore:${d.host}`;
    const { health, reason } = judgeDatastore(d, unreachable(d.host));
    const g = d.galera;
    const sub = g ? `Galera ${g.state}${d.host === dbWriter ? ' · writer' : ''}` : d.version ? `MariaDB ${d.version.replace(/-MariaDB.*$/, '')}` : 'MariaDB';
    els.push({ id, tier: 'datastore', label: d.host, sub, health, reason, facts: datastoreFacts(d, d.host === dbWriter) });
    const replica = s.galera && dbWriter !== null && d.host !== dbWriter;
    for (const h of servers) edges.push({ from: `server:${h.name}`, to: id, health: replica ? 'unknown' : health, reason: replica ? `replica of ${dbWriter}: kine writes go to ${dbWriter}` : `kine on ${h.name} -> ${d.host}`, ...(replica ? { standby: true } : {}) });
  }
  const notes: PageModel['notes'] = {};
  if (agents.length) notes.agent = 'join through the load balancer';
  if (s.galera) {
    const seen = Math.max(0, ...s.datastores.filter((d) => d.galera?.clusterStatus === 'Primary').map((d) => d.galera!.size));
    notes.datastore = `Galera: ${seen}${typeof s.galera.expectedSize === 'number' ? ` of ${s.galera.expectedSize}` : ''} members${dbWriter ? `, writer ${dbWriter}` : writers.length > 1 ? `, writers ${writers.join(' and ')}!` : ''}`;
  }
  // Agents join through the LB (or VIP); drawn as one standby path from the agents' tier.
  for (const a of agents) edges.push({ from: `agent:${a.name}`, to: s.vip ? 'vip' : (s.loadBalancers[0] ? `lb:${s.loadBalancers[0].host}` : 'clients'), health: 'ok', reason: `${a.name} reaches the API through the load balancer`, standby: true });

  const pools: PoolView[] = (s.metallb?.pools ?? []).map((p) => ({ name: p.name, used: p.used.length, size: p.size, services: p.used.map((u) => `${u.service} = ${u.ip}`), health: p.size > 0 && p.used.length >= p.size ? 'bad' : p.used.length >= p.size * 0.8 ? 'warn' : 'ok' }));

  return {
    cluster: s.cluster,
    apiServerUrl: s.apiServerUrl,
    at: s.at,
    ms: s.ms,
    healthy: degraded.length === 0,
    degraded,
    elements: els,
    edges,
    vipHolder,
    dbWriter,
    notes,
    pools,
    pending: s.metallb?.pending ?? [],
    versions: versions(s, ctx),
    extra: Object.entries(s as unknown as Record<string, unknown>)
      .filter(([k, v]) => !DRAWN.has(k) && v !== undefined)
      .map(([key, value]) => ({ key, title: titleOf(key), value })),
  };
}

function judgeLb(lb: LoadBalancerStatus, down: string | null): { health: Health; reason: string } {
  if (down) return { health: 'bad', reason: down };
  if (lb.active === null) return { health: 'bad', reason: `not asked${lb.error ? `: ${firstLine(lb.error)}` : ''}` };
  if (!lb.active) return { health: 'bad', reason: `${lb.unit} is not running` };
  if (lb.error) return { health: 'warn', reason: firstLine(lb.error) };
  const bad = lb.upstreams.filter((u) => u.state !== 'up');
  if (bad.length === lb.upstreams.length && bad.length) return { health: 'bad', reason: `every upstream down: ${bad.map((u) => `${u.name} ${u.state}`).join(', ')}` };
  if (bad.length) return { health: 'warn', reason: `${lb.unit} running; upstream ${bad.map((u) => `${u.name} ${u.state}${u.detail ? ` (${u.detail})` : ''}`).join(', ')}` };
  return { health: 'ok', reason: `${lb.unit} running; ${lb.upstreams.length} upstream${lb.upstreams.length === 1 ? '' : 's'} up` };
}

function judgeDatastore(d: DatastoreStatus, down: string | null): { health: Health; reason: string } {
  if (down) return { health: 'bad', reason: down };
  if (d.active === false) return { health: 'bad', reason: 'mariadb is not running' };
  if (!d.reachable) return { health: 'bad', reason: `not answering${d.error ? `: ${firstLine(d.error)}` : ''}` };
  const g = d.galera;
  if (g && g.clusterStatus !== 'Primary') return { health: 'bad', reason: `Galera node outside the primary component (${g.clusterStatus}): takes no writes` };
  if (g && g.state !== 'Synced') return { health: 'warn', reason: `Galera node ${g.state}, not Synced: takes no writes` };
  const answering = `answering; ${d.sizeBytes === null ? 'size unknown' : formatBytes(d.sizeBytes)}, ${d.kineRows === null ? 'no kine table yet' : `${d.kineRows} kine rows`}`;
  // A stale scheduled backup does not stop the cluster: degraded, not down.
  if (d.backup?.stale) return { health: 'warn', reason: `${answering}; ${backupText(d)} (stale after ${formatAge(d.backup.staleAfterS)})` };
  return { health: 'ok', reason: answering };
}

function backupText(d: DatastoreStatus): string {
  const b = d.backup;
  if (!b) return 'no scheduled backups';
  return b.newest ? `newest backup ${formatAge(b.ageS ?? 0)} old, ${b.count} kept` : `no backup yet in ${b.dir}`;
}

function datastoreFacts(d: DatastoreStatus, writer: boolean): [string, string][] {
  const out: [string, string][] = [['version', d.version ?? 'unknown'], ['size', d.sizeBytes === null ? 'unknown' : formatBytes(d.sizeBytes)], ['kine rows', d.kineRows === null ? 'no table yet' : String(d.kineRows)]];
  if (d.galera) out.push(['Galera', `${d.galera.state}, ${d.galera.clusterStatus}, cluster size ${d.galera.size}${writer ? '; the writer' : ''}`]);
  if (d.backup) out.push(['scheduled backups', `${backupText(d)} in ${d.backup.dir}${d.backup.stale ? ' — STALE' : ''}`]);
  if (d.error) out.push(['error', firstLine(d.error)]);
  // Fields added to DatastoreStatus later (Galera, backups) are listed as they come.
  for (const [k, v] of Object.entries(d as unknown as Record<string, unknown>)) if (!DATASTORE_KNOWN.has(k) && v !== undefined) out.push([titleOf(k), plain(v)]);
  return out;
}

function versions(s: StatusSnapshot, ctx: PageContext): [string, string][] {
  const out: [string, string][] = [];
  const byVersion = new Map<string, string[]>();
  for (const n of s.kube.nodes) byVersion.set(n.kubeletVersion || '?', [...(byVersion.get(n.kubeletVersion || '?') ?? []), n.name]);
  const want = ctx.desired?.k3s;
  for (const [v, names] of [...byVersion].sort()) out.push([`k3s ${v}`, `${names.length === s.kube.nodes.length ? 'every node' : names.join(', ')}${want && v !== want ? ` (the cluster file asks for ${want})` : ''}`]);
  if (!byVersion.size && want) out.push([`k3s ${want}`, 'asked for by the cluster file (no node read)']);
  for (const d of s.datastores) if (d.version) out.push([`MariaDB ${d.version}`, d.host]);
  const kinds = [...new Set(s.loadBalancers.map((l) => l.kind))];
  for (const k of kinds) out.push([k, s.loadBalancers.filter((l) => l.kind === k).map((l) => l.host).join(', ')]);
  if (ctx.desired?.metallb) out.push([`MetalLB ${ctx.desired.metallb}`, 'the cluster file']);
  return out;
}

/** `kineRows` -> `Kine rows`, `newestBackup` -> `Newest backup`. */
export function titleOf(key: string): string {
  const words = key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[_-]+/g, ' ').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A value as one line of text (for facts); objects as `k: v` pairs. */
export function plain(v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (Array.isArray(v)) return v.map(plain).join(', ') || '—';
  if (typeof v === 'object') return Object.entries(v as Record<string, unknown>).map(([k, x]) => `${k}: ${plain(x)}`).join('; ');
  return String(v);
}

export const healthOf = (m: PageModel): Health => worst(m.elements.map((e) => e.health).filter((h) => h !== 'unknown').concat(m.healthy ? [] : ['warn']));
