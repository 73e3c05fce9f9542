import type { Host } from '../transport/host.js';
import { Command, sh } from '../transport/quote.js';

/**
 * What a Galera data node says about itself, and the one decision the phase
 * makes from all of them together: is there a running primary component to
 * join, or must the cluster be bootstrapped, and from which node. The
 * decision is pure, so every rule about bootstrapping is tested on its own.
 */

export const GRASTATE_PATH = '/var/lib/mysql/grastate.dat';
const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

export interface Grastate {
  uuid: string;
  /** -1 after a crash (the position is then in InnoDB: --wsrep-recover). */
  seqno: number;
  safeToBootstrap: boolean;
}

export interface GaleraNodeView {
  name: string;
  /** False when the node could not be read at all (down machine, no SSH). */
  reachable: boolean;
  error?: string;
  /** mariadb.service is active. */
  running: boolean;
  /**
   * `systemctl is-active mariadb` as read (active, activating, inactive,
   * failed...). Only an inactive or failed unit has no server process: a
   * node that is activating is mid-start (a state transfer takes its whole
   * length) and not "stopped". Absent: not read.
   */
  unit?: string;
  /** `wsrep_*` status of the running server (lower-case names), or null. */
  status: Map<string, string> | null;
  grastate: Grastate | null;
  /** The position `galera_recovery` (mariadbd --wsrep-recover) found, for a stopped node with seqno -1. */
  recovered: { uuid: string; seqno: number } | null;
}

export function parseGrastate(text: string): Grastate | null {
  const uuid = /^uuid:\s*(\S+)/m.exec(text)?.[1];
  const seqno = /^seqno:\s*(-?\d+)/m.exec(text)?.[1];
  if (uuid === undefined || seqno === undefined) return null;
  return { uuid, seqno: Number(seqno), safeToBootstrap: /^safe_to_bootstrap:\s*1/m.test(text) };
}

/** `--wsrep_start_position=UUID:SEQNO` (galera_recovery's output) -> the position. */
export function parseRecovered(text: string): { uuid: string; seqno: number } | null {
  const m = /--wsrep_start_position=([0-9a-f-]{36}):(-?\d+)/.exec(text);
  return m ? { uuid: m[1]!, seqno: Number(m[2]) } : null;
}

/** One round trip: the unit's state, grastate.dat, and the wsrep status when it runs. */
export const READ_NODE: Command = new Command(
  [
    'a=$(systemctl is-active mariadb 2>/dev/null); echo "active\t$a"',
    `if [ -f ${GRASTATE_PATH} ]; then sed 's/^/grastate\t/' ${GRASTATE_PATH}; fi`,
    `if [ "$a" = active ]; then timeout 10 mariadb --batch --skip-column-names -e "SHOW GLOBAL STATUS LIKE 'wsrep%'" 2>/dev/null | sed 's/^/status\t/'; fi`,
    'true',
  ].join('\n'),
);

/**
 * What the node's InnoDB says its last committed position is. It runs the
 * server binary in recovery mode for a moment (what mariadb.service itself
 * does before every start), so it is only asked of a stopped node.
 */
export const RECOVER_POSITION: Command = sh`galera_recovery`;

export function parseNodeRead(name: string, stdout: string): GaleraNodeView {
  let running = false;
  let unit: string | undefined;
  const status = new Map<string, string>();
  const gra: string[] = [];
  for (const line of stdout.split('\n')) {
    const [tag, ...rest] = line.split('\t');
    if (tag === 'active') ((unit = rest[0]?.trim() || undefined), (running = rest[0] === 'active'));
    else if (tag === 'grastate') gra.push(rest.join('\t'));
    else if (tag === 'status' && rest[0]) status.set(rest[0].toLowerCase(), rest[1] ?? '');
  }
  return { name, reachable: true, running, ...(unit !== undefined ? { unit } : {}), status: running && status.size ? status : null, grastate: gra.length ? parseGrastate(gra.join('\n')) : null, recovered: null };
}

/** Read one node; a node that cannot be read is reported as such, not thrown. */
export async function readGaleraNode(name: string, host: () => Promise<Host>): Promise<GaleraNodeView> {
  try {
    const h = await host();
    const v = parseNodeRead(name, (await h.exec(READ_NODE, { timeoutMs: 20_000 })).stdout);
    if (isStopped(v) && v.grastate && holdsData(v.grastate) && v.grastate.seqno < 0) {
      const r = await h.exec(RECOVER_POSITION, { allowFailure: true, timeoutMs: 120_000 });
      v.recovered = parseRecovered(r.stdout + '\n' + r.stderr);
    }
    return v;
  } catch (e) {
    return { name, reachable: false, error: e instanceof Error ? e.message : String(e), running: false, status: null, grastate: null, recovered: null };
  }
}

/**
 * No server process runs: the unit is inactive or failed. galera_recovery
 * (mariadbd --wsrep-recover) must only run then. On a node that is starting
 * — seqno is -1 in grastate.dat from the first moment, and a joiner's unit
 * stays "activating" through its whole state transfer — it is a second server
 * on the same data directory: measured on the lab, it waits 30 s for the
 * running server's Aria lock (so every wait that read the node stalled 30 s
 * after a bootstrap), and during a state transfer, before the joiner locks
 * its files, it would open a data directory mbstream is still writing.
 */
export function isStopped(v: GaleraNodeView): boolean {
  return !v.running && (v.unit === undefined || v.unit === 'inactive' || v.unit === 'failed' || v.unit === 'unknown');
}

/** A grastate.dat with a cluster uuid: the node has been part of a cluster and holds its data. */
export function holdsData(g: Grastate | null): boolean {
  return g !== null && g.uuid !== ZERO_UUID && g.uuid !== '';
}

/** Synced (4) and in the primary component: fit for writes. */
export function isSyncedPrimary(v: GaleraNodeView): boolean {
  return v.status?.get('wsrep_cluster_status') === 'Primary' && v.status.get('wsrep_local_state_comment') === 'Synced' && v.status.get('wsrep_ready') === 'ON';
}

/** Runs as a Galera node (connected or not); a standalone server (wsrep off, as the package starts it) does not count. */
export function isGaleraRunning(v: GaleraNodeView): boolean {
  const st = v.status?.get('wsrep_cluster_status');
  return v.running && st !== undefined && st !== '' && st !== 'Disconnected';
}

export function isPrimary(v: GaleraNodeView): boolean {
  return v.status?.get('wsrep_cluster_status') === 'Primary';
}

/** The node's last committed position: its running state, grastate.dat, or the recovered one. */
export function position(v: GaleraNodeView): { uuid: string; seqno: number } | null {
  const s = v.status;
  if (s?.get('wsrep_cluster_state_uuid') && s.get('wsrep_last_committed') !== undefined) {
    return { uuid: s.get('wsrep_cluster_state_uuid')!, seqno: Number(s.get('wsrep_last_committed')) };
  }
  if (v.grastate && holdsData(v.grastate) && v.grastate.seqno >= 0) return { uuid: v.grastate.uuid, seqno: v.grastate.seqno };
  return v.recovered;
}

export type GaleraDecision =
  /** A primary component runs: every other node joins it (IST or SST). */
  | { kind: 'running'; primary: string[] }
  /** No node has ever held data and none runs: a new cluster from `bootstrap`. */
  | { kind: 'new'; bootstrap: string }
  /** Every data node is down and each one's position is known: bootstrap from the most advanced. */
  | { kind: 'recover'; bootstrap: string; seqno: number; positions: { name: string; seqno: number }[] }
  /** Bootstrapping now could lose data or split the cluster: say why and what to do. */
  | { kind: 'blocked'; reason: string; hint: string };

/**
 * The rule (FACTS "Datastore HA with kine", Galera's own recovery guide):
 * never bootstrap while a primary component exists; never from a node that
 * is behind another; never from a guess. `order` is the preference for ties
 * (the preferred writer first).
 */
export function decideGalera(views: readonly GaleraNodeView[], order: readonly string[]): GaleraDecision {
  const byOrder = (a: { name: string }, b: { name: string }) => order.indexOf(a.name) - order.indexOf(b.name);
  const primary = views.filter(isPrimary).map((v) => v.name);
  if (primary.length) return { kind: 'running', primary };
  const unreadable = views.filter((v) => !v.reachable);
  const withData = views.filter((v) => holdsData(v.grastate) || isGaleraRunning(v));
  if (withData.length === 0 && unreadable.length === 0) {
    return { kind: 'new', bootstrap: [...views].sort(byOrder)[0]!.name };
  }
  if (unreadable.length) {
    return {
      kind: 'blocked',
      reason: `no Galera node is in a primary component, and ${unreadable.map((v) => v.name).join(', ')} cannot be read: its data may be the most recent`,
      hint: `bring ${unreadable.map((v) => v.name).join(', ')} back (or remove it from the cluster file if it is gone for good) and run apply again`,
    };
  }
  const running = views.filter(isGaleraRunning);
  if (running.length) {
    return {
      kind: 'blocked',
      reason: `${running.map((v) => v.name).join(', ')} ${running.length > 1 ? 'run' : 'runs'} without a primary component (quorum lost); bootstrapping beside a running node could split the cluster`,
      hint: `if the other nodes are gone, stop mariadb on ${running.map((v) => v.name).join(', ')} (systemctl stop mariadb) and run apply again: it then bootstraps from the most advanced node`,
    };
  }
  const starting = views.filter((v) => !v.running && !isStopped(v));
  if (starting.length) {
    return {
      kind: 'blocked',
      reason: `${starting.map((v) => `${v.name} (mariadb ${v.unit})`).join(', ')} ${starting.length > 1 ? 'are' : 'is'} starting or stopping, with no primary component to join: its position is known only once it is up or down`,
      hint: `wait for it (journalctl -u mariadb on ${starting.map((v) => v.name).join(', ')}) and run apply again`,
    };
  }
    const unknown = views.filter((v) => position(v) === null && holdsData(v.grastate));
  if (unknown.length) {
    return {
      kind: 'blocked',
      reason: `the last position of ${unknown.map((v) => v.name).join(', ')} is unknown (grastate.dat seqno -1 and mariadbd --wsrep-recover found none)`,
      hint: `look at journalctl -u mariadb on ${unknown.map((v) => v.name).join(', ')}; run galera_recovery there by hand to see why`,
    };
  }
  const positions = withData.map((v) => ({ name: v.name, ...position(v)! }));
  const uuids = new Set(positions.map((p) => p.uuid));
  if (uuids.size > 1) {
    return {
      kind: 'blocked',
      reason: `the data nodes hold different cluster histories (${positions.map((p) => `${p.name} ${p.uuid}`).join(', ')})`,
      hint: 'decide which history is the real one; move the others\' /var/lib/mysql aside (they then receive a full copy) and run apply again',
    };
  }
  const best = Math.max(...positions.map((p) => p.seqno));
  const top = positions.filter((p) => p.seqno === best).sort(byOrder);
  return { kind: 'recover', bootstrap: top[0]!.name, seqno: best, positions: positions.map((p) => ({ name: p.name, seqno: p.seqno })).sort(byOrder) };
}
