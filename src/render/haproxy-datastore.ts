import { RenderInputError, assertDatastoreListener, assertInt, assertIp, assertName, assertPort, byString, durationText, hostPort } from './common.js';
import type { LbUpstream } from './nginx.js';

/** Backend of the datastore listener, for `show servers state`. */
export const HAPROXY_DATASTORE_BACKEND = 'k3s_datastore';
/** The one-entry table whose gpt0 is the server id of the current writer (`show table`). */
export const HAPROXY_WRITER_TABLE = 'k3s_datastore_writer';
/** The one-entry table of the hold-down after a writer is lost (gpt0: the lost writer's id). */
export const HAPROXY_HOLD_TABLE = 'k3s_datastore_hold';
/**
 * The hold table's gpt0 while a hold-down runs because this load balancer
 * just took the virtual IP (server ids are 1..number of nodes).
 */
export const VIP_HOLD_MARK = 1000;
/** Run by keepalived when this load balancer takes the virtual IP (renderVipHoldScript). */
export const VIP_HOLD_SCRIPT_PATH = '/usr/local/sbin/k8s-ha-datastore-hold';
/** Run by keepalived when this load balancer gives up the virtual IP (renderVipReleaseScript). */
export const VIP_RELEASE_SCRIPT_PATH = '/usr/local/sbin/k8s-ha-datastore-release';
/** Default TCP port HAProxy's peers use between the load balancers (and old/new process at a reload). */
export const HAPROXY_PEER_PORT = 10000;

export interface HaproxyDatastoreInput {
  /** Port the k3s servers' datastore-endpoint names (3306). */
  listenPort: number;
  /**
   * The data nodes, the preferred writer first: it is the only non-backup
   * server, so a first connection goes to it; the others are backups, tried
   * in this order.
   */
  nodes: LbUpstream[];
  /** Port of each node's Galera HTTP check (200 = Synced and Primary). */
  checkPort: number;
  intervalMs: number;
  fall: number;
  rise: number;
  /**
   * How long, after the writer is lost, every new datastore connection is
   * refused before the next node takes writes (the hold-down, see
   * datastoreLines). 0: none.
   */
  holdMs: number;
  /** Send a PROXY protocol v2 header so MariaDB sees the k3s server's address. Default: false. */
  proxyProtocol?: boolean;
  /**
   * This load balancer's name and every load balancer's address: HAProxy's
   * `peers` keep the writer (the writer table) across a reload, whose old
   * process still holds kine's sessions on it, and share it with the other
   * load balancer so a virtual IP failover keeps the writer.
   */
  peers: { self: string; all: { name: string; address: string }[]; port?: number };
}

export function validateDatastore(d: HaproxyDatastoreInput | undefined, apiPort: number): void {
  if (d === undefined) return;
  assertDatastoreListener(d, apiPort);
  durationText('datastore.intervalMs', d.intervalMs);
  assertInt('datastore.fall', d.fall, 1, 100);
  assertInt('datastore.rise', d.rise, 1, 100);
  assertInt('datastore.holdMs', d.holdMs, 0, 60_000);
  d.peers.all.forEach((p, i) => {
    assertName(`datastore.peers.all[${i}].name`, p.name);
    assertIp(`datastore.peers.all[${i}].address`, p.address);
  });
  if (d.peers.port !== undefined) assertPort('datastore.peers.port', d.peers.port);
  if (!d.peers.all.some((p) => p.name === d.peers.self)) throw new RenderInputError('datastore.peers.self', `must be one of the peers, got ${JSON.stringify(d.peers.self)}`);
}

/**
 * Each node's HAProxy server id: 1 + its place among the node names sorted,
 * so both load balancers (and the old and new process at a reload) give a
 * node the same id, which is what the writer table records.
 */
export function datastoreServerIds(d: Pick<HaproxyDatastoreInput, 'nodes'>): Map<string, number> {
  return new Map([...d.nodes].map((n) => n.name).sort(byString).map((name, i) => [name, i + 1]));
}

/**
 * One writer (FACTS "Datastore HA with kine"): kine needs every server to
 * write to the same Galera node, and must never be told a write succeeded
 * that the new writer does not hold.
 *
 * - The writer table holds the id of the node the last connection reached
 *   (set when the node answers). `use-server` keeps every new connection on
 *   that node while it is up, so HAProxy moves only when it is marked down
 *   and never back by itself (`backup` alone would send new connections back
 *   to the preferred node while the old ones stay: two writers). The peers
 *   keep it across a reload and share it with the other load balancer. (A
 *   `stick on` table is not enough: HAProxy drops its entry when a connect to
 *   the node fails, before the check marks it down, so the next connection
 *   was routed as if no writer had been chosen.)
 * - The hold-down: kine v0.17's Create, when its INSERT fails, reads the key
 *   back on a fresh connection and reports success if no row is found. Right
 *   after a switch that read reaches the new writer, which never saw the
 *   INSERT, and the API server acknowledges a write that does not exist. So
 *   for `holdMs` after the first connection that finds the writer lost, every
 *   new connection is refused (the read-back fails, kine refuses the create,
 *   the client retries); then the next node takes writes. The hold table's
 *   gpt0 is the lost writer's id while the hold runs, its idle time the
 *   hold's age; it is cleared once a writer is up again.
 * - The same after this load balancer takes the virtual IP (keepalived runs
 *   renderVipHoldScript, which marks the hold table): kine's connections to
 *   the other load balancer break, and a create whose INSERT was cut reads
 *   back through this one; refused, the create fails instead of reporting a
 *   row that was never written (with or without a writer switch).
 * - No redispatch here: a connection retried while the dead writer is not
 *   yet marked down must fail, not land on the next node behind the hold.
 */
export function datastoreLines(d: HaproxyDatastoreInput, listenAddress: string | undefined): string[] {
  const bind = listenAddress === undefined ? `:${d.listenPort}` : hostPort(listenAddress, d.listenPort);
  const ids = datastoreServerIds(d);
  const nodes = d.nodes.map((n) => ({ ...n, id: ids.get(n.name)! }));
  const B = HAPROXY_DATASTORE_BACKEND;
  const peerPort = d.peers.port ?? HAPROXY_PEER_PORT;
  const l: string[] = [];
  l.push('peers k8s_ha_lbs');
  for (const p of [...d.peers.all].sort((a, b) => byString(a.name, b.name))) l.push(`    peer ${p.name} ${hostPort(p.address, peerPort)}`);
  l.push('');
  l.push(`backend ${HAPROXY_WRITER_TABLE}`);
  l.push('    # gpt0: the server id of the current writer. Kept across reloads and');
  l.push('    # shared with the other load balancer by the peers.');
  l.push('    stick-table type integer size 1 store gpt0 peers k8s_ha_lbs');
  l.push('');
  l.push(`backend ${HAPROXY_HOLD_TABLE}`);
  l.push("    # gpt0: the lost writer's id while a hold-down runs; idle time: its age.");
  l.push('    stick-table type integer size 1 expire 1h store gpt0');
  l.push('');
  l.push('frontend k3s_datastore_in');
  l.push(`    bind ${bind}`);
  l.push('    option tcplog');
  l.push(`    default_backend ${B}`);
  l.push('');
  l.push(`backend ${B}`);
  l.push('    # Galera, one writer: the first node, the others only when it is down.');
  l.push('    # The check asks each node whether it is Synced in the primary component');
  l.push('    # (k8s-ha-galera-check); a plain TCP or mysql check passes on a Donor or a');
  l.push('    # node cut off in a non-primary component.');
  l.push('    option httpchk GET /');
  l.push('    http-check expect status 200');
  l.push('    # A retry must not reach another node before the hold-down below.');
  l.push('    no option redispatch');
  for (const n of nodes) {
    l.push(`    acl writer_${n.id} int(1),table_gpt0(${HAPROXY_WRITER_TABLE}) -m int ${n.id}`);
    l.push(`    acl up_${n.id} srv_is_up(${B}/${n.name})`);
    l.push(`    acl held_${n.id} int(1),table_gpt0(${HAPROXY_HOLD_TABLE}) -m int ${n.id}`);
  }
  // HAProxy conditions: terms side by side are ANDed and bind tighter than `||`.
  const lost = (tail: (id: number) => string) => nodes.map((n) => `writer_${n.id} !up_${n.id} ${tail(n.id)}`).join(' || ');
  const upAgain = nodes.map((n) => `writer_${n.id} up_${n.id} held_any hold_over`).join(' || ');
  l.push(`    acl held_any int(1),table_gpt0(${HAPROXY_HOLD_TABLE}) -m int gt 0`);
  l.push(`    acl held_vip int(1),table_gpt0(${HAPROXY_HOLD_TABLE}) -m int ${VIP_HOLD_MARK}`);
  if (d.holdMs > 0) {
    l.push(`    acl hold_running int(1),table_idle(${HAPROXY_HOLD_TABLE},0) -m int lt ${d.holdMs}`);
    l.push('    acl hold_over var(sess.k8s_ha_hold_over) -m bool');
    l.push('    # Read before track-sc1 below, which touches the entry (its idle time restarts).');
    l.push('    tcp-request content set-var(sess.k8s_ha_hold_over) bool(1) if !hold_running');
    l.push('    # The writer lost: start a hold-down (once per lost writer).');
    l.push(`    tcp-request content track-sc1 int(1) table ${HAPROXY_HOLD_TABLE} if ${lost((id) => `!held_${id}`)} || ${upAgain}`);
    for (const n of nodes) l.push(`    tcp-request content sc-set-gpt0(1) ${n.id} if writer_${n.id} !up_${n.id} !held_${n.id}`);
    l.push('    # A writer up and no hold-down running: the next loss starts a new one.');
    l.push(`    tcp-request content sc-set-gpt0(1) 0 if ${upAgain}`);
    l.push(`    # Refuse every new connection for ${durationText('datastore.holdMs', d.holdMs)} after the writer was lost,`);
    l.push('    # or after this load balancer took the virtual IP.');
    l.push(`    tcp-request content reject if ${lost((id) => `held_${id} hold_running`)} || held_vip hold_running`);
  }
  l.push('    # Record the node that answers as the writer.');
  l.push(`    tcp-request content track-sc2 int(1) table ${HAPROXY_WRITER_TABLE}`);
  l.push('    tcp-response content sc-set-gpt0(2) srv_id');
  for (const n of nodes) l.push(`    use-server ${n.name} if writer_${n.id} up_${n.id}`);
  l.push('    # The writer marked down: close its sessions (kine reconnects through the');
  l.push('    # new writer) so no server keeps writing to a node the others have left.');
  const proxy = d.proxyProtocol ? ' send-proxy-v2' : '';
  l.push(`    default-server check port ${d.checkPort} inter ${durationText('datastore.intervalMs', d.intervalMs)} fall ${d.fall} rise ${d.rise} on-marked-down shutdown-sessions${proxy}`);
  nodes.forEach((n, i) => l.push(`    server ${n.name} ${hostPort(n.address, n.port)} id ${n.id}${i === 0 ? '' : ' backup'}`));
  return l;
}

/**
 * `show table k3s_datastore_writer; show servers state k3s_datastore` ->
 * the node the writer table names, or null (no entry yet, or an id no
 * server has).
 */
export function parseWriterTable(stdout: string): string | null {
  const id = /^\S+: key=1 .*\bgpt0=(\d+)/m.exec(stdout)?.[1];
  if (id === undefined || id === '0') return null;
  // `show servers state` rows: be_id be_name srv_id srv_name srv_addr ...
  for (const line of stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] === HAPROXY_DATASTORE_BACKEND && f[2] === id && f[3] !== undefined) return f[3];
  }
  return null;
}

/**
 * keepalived's notify_master script on a load balancer with the datastore
 * listener: start the hold-down (the hold table's entry touched, gpt0 the
 * VIP mark). It never fails keepalived: without HAProxy there is nothing to hold.
 */
export function renderVipHoldScript(adminSocket: string): string {
  return [
    '#!/bin/sh',
    '# Managed by k8s-ha: local edits are overwritten on the next apply.',
    '# Run by keepalived when this host takes the virtual IP: for the hold-down',
    "# HAProxy refuses new datastore connections, so kine's read-back of a create",
    '# whose INSERT the move cut fails instead of reporting a row never written.',
    `echo 'set table ${HAPROXY_HOLD_TABLE} key 1 data.gpt0 ${VIP_HOLD_MARK}' | socat - UNIX:${adminSocket} >/dev/null 2>&1`,
    'exit 0',
    '',
  ].join('\n');
}

/**
 * keepalived's notify_backup/notify_fault/notify_stop script on a load
 * balancer with the datastore listener: close every datastore session through
 * this HAProxy. Once the virtual IP is elsewhere the k3s servers' packets for
 * these sessions reach the other load balancer (which resets them), but this
 * one never hears of it and keeps the server side open (`timeout server`): a
 * kine transaction whose INSERT had run and whose COMMIT went to the other
 * host stays open on the writer, holding its auto-increment id and row lock.
 * kine's fill of that id then waits for the lock (35 s measured), in the poll
 * loop that feeds every watch, and skips it with a `GAP` line (measured in
 * the lab when the VIP failed back to a machine that came back, g-gap).
 * Closed, MariaDB rolls the transaction back at once and kine fills the id.
 * Like the hold script, it never fails keepalived.
 */
export function renderVipReleaseScript(adminSocket: string, nodes: readonly string[]): string {
  nodes.forEach((n, i) => assertName(`nodes[${i}]`, n));
  const cmds = [...nodes].sort(byString).map((n) => `shutdown sessions server ${HAPROXY_DATASTORE_BACKEND}/${n}`);
  return [
    '#!/bin/sh',
    '# Managed by k8s-ha: local edits are overwritten on the next apply.',
    '# Run by keepalived when this host gives up the virtual IP: the datastore',
    "# sessions through it have lost their clients (their packets reach the other",
    "# host now); closed, MariaDB rolls back a kine transaction left open in them",
    "# instead of holding its id and lock until HAProxy's idle timeout.",
    `echo '${cmds.join('; ')}' | socat - UNIX:${adminSocket} >/dev/null 2>&1`,
    'exit 0',
    '',
  ].join('\n');
}
