import type { Lab } from './index.js';
import { HAPROXY_ADMIN_SOCKET } from '../src/render/haproxy.js';
import { HAPROXY_DATASTORE_BACKEND, HAPROXY_HOLD_TABLE, HAPROXY_WRITER_TABLE } from '../src/render/haproxy-datastore.js';
import { NGINX_DATASTORE_STATE_PATH, NGINX_WRITER_PATH } from '../src/render/nginx-datastore.js';
import { DRILL_NAMESPACE, wallMs, type WatchEvent, type WriteRecord } from './galera-drill.js';

/**
 * What the lab saw around an acknowledged create that does not exist
 * afterwards (issue 14's lost writes), so a loss is explained from its own
 * run instead of inferred: the revision the API answered and whose row that
 * id is in the kine table, every row of the key, the load balancers' writer
 * and hold-down state sampled every 200 ms, HAProxy's session log lines and
 * the k3s servers' errors in the same seconds. Observation only.
 *
 * A create kine acknowledged after its INSERT failed (kine v0.17's
 * `LogStructured.Create`, README "Galera datastore") shows as: the answered
 * revision is the id of another key's row (adjustRevision filled in the
 * current revision) and the key has no row at all.
 */

const SAMPLE_LOG = '/run/k8s-ha-drill-lb-samples.log';
const SAMPLE_PID = '/run/k8s-ha-drill-lb-samples.pid';

/** Samples each HAProxy's writer table, hold table and datastore server states every 200 ms, inside the machine. */
export class LbSampler {
  constructor(
    private readonly lab: Lab,
    private readonly lbs: readonly string[],
  ) {}

  async start(): Promise<void> {
    const cmd = `show table ${HAPROXY_WRITER_TABLE}; show table ${HAPROXY_HOLD_TABLE}; show servers state ${HAPROXY_DATASTORE_BACKEND}`;
    // One line per sample: the time, then HAProxy's admin socket's answer (or
    // nginx's checker's writer file and datastore server lines) folded onto the line.
    // The routing point that runs now (after a switch to nginx the HAProxy socket file stays behind).
    const read = `if systemctl -q is-active haproxy; then echo '${cmd}' | socat -t 1 - UNIX:${HAPROXY_ADMIN_SOCKET} 2>&1; else echo "writer=$(cat ${NGINX_WRITER_PATH} 2>/dev/null)"; grep -o 'server [^;]*' ${NGINX_DATASTORE_STATE_PATH} 2>/dev/null; fi`;
    const loop = `while :; do t=$(date +%s.%3N); s=$( (${read}) | grep -v '^$' | tr '\\n' '|'); echo "$t $s"; sleep 0.2; done`;
    await Promise.all(
      this.lbs.map((lb) =>
        this.lab.exec(lb, ['sh', '-c', `rm -f ${SAMPLE_LOG}; setsid sh -c '${loop.replace(/'/g, `'\\''`)}' > ${SAMPLE_LOG} 2>&1 < /dev/null & echo $! > ${SAMPLE_PID}`], { allowFailure: true }),
      ),
    );
  }

  /** Stops the loops; returns each load balancer's samples (none from a machine that was powered off). */
  async stop(): Promise<Map<string, { t: number; state: string }[]>> {
    const out = new Map<string, { t: number; state: string }[]>();
    for (const lb of this.lbs) {
      const r = await this.lab.exec(lb, ['sh', '-c', `kill $(cat ${SAMPLE_PID} 2>/dev/null) 2>/dev/null; cat ${SAMPLE_LOG} 2>/dev/null; rm -f ${SAMPLE_LOG} ${SAMPLE_PID}`], { allowFailure: true });
      const rows: { t: number; state: string }[] = [];
      for (const line of r.stdout.split('\n')) {
        const m = /^(\d+\.\d+) (.*)$/.exec(line);
        if (m) rows.push({ t: Math.round(Number(m[1]) * 1000), state: compactState(m[2]!) });
      }
      out.set(lb, rows);
    }
    return out;
  }
}

/** The parts of a sample that matter: the tables' entries and each server's name, operational and admin state. */
export function compactState(raw: string): string {
  const parts: string[] = [];
  for (const seg of raw.split('|')) {
    const s = seg.trim();
    if (!s) continue;
    const table = /^# table: ([^,\s]+)/.exec(s);
    if (table) {
      parts.push(`${table[1]!.replace('k3s_datastore_', '')}:`);
      continue;
    }
    if (s.startsWith('#') || /^\d+$/.test(s)) continue;
    if (/^0x[0-9a-f]+: /.test(s)) {
      // use= and exp= change every sample; the sample's time says as much.
      parts.push(`entry ${s.replace(/^0x[0-9a-f]+: /, '').replace(/ (use|exp)=\S+/g, '')}`);
      continue;
    }
    // show servers state: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
    const f = s.split(/\s+/);
    if (f.length > 7 && /^\d+$/.test(f[0]!) && /^\d+$/.test(f[2]!)) {
      parts.push(`${f[3]}=op${f[5]}/adm${f[6]}`);
      continue;
    }
    parts.push(s);
  }
  return parts.join(' ');
}

const iso = (ms: number) => new Date(ms).toISOString().slice(11, 23);

async function sql(lab: Lab, nodes: readonly string[], q: string): Promise<string> {
  for (const n of nodes) {
    const r = await lab.exec(n, ['sh', '-c', `timeout 10 mariadb --batch --skip-column-names -e "${q}"`], { allowFailure: true });
    if (r.code === 0) return r.stdout.trim();
  }
  return '(no data node answered)';
}

/** Every row of a drill ConfigMap's key in the kine table (id, created, deleted), on one line. */
async function keyRows(lab: Lab, nodes: readonly string[], name: string): Promise<string> {
  return (await sql(lab, nodes, `SELECT id, created, deleted FROM k3s.kine WHERE name = '/registry/configmaps/${DRILL_NAMESPACE}/${name}'`)).replace(/\n/g, '; ') || '(none)';
}

/**
 * One paragraph per lost create (the first `max`): what the API answered,
 * what the kine table holds for that revision and that key, and what the
 * load balancers and servers did in the same seconds.
 */
export async function explainLost(
  lab: Lab,
  o: { lost: WriteRecord[]; faultMs: number; dataNodes: readonly string[]; lbs: readonly string[]; servers: readonly string[]; samples: Map<string, { t: number; state: string }[]>; max?: number },
): Promise<string[]> {
  const out: string[] = [];
  for (const r of o.lost.slice(0, o.max ?? 3)) {
    const from = wallMs(r.sentMs) - 1500;
    const to = wallMs(r.doneMs) + 1500;
    out.push(`lost ${r.name}: sent ${iso(wallMs(r.sentMs))} (fault +${Math.round(r.sentMs - o.faultMs)} ms), answered ${iso(wallMs(r.doneMs))} after ${Math.round(r.doneMs - r.sentMs)} ms with resourceVersion ${r.resourceVersion}`);
    const rv = Number(r.resourceVersion);
    if (Number.isInteger(rv)) out.push(`  kine row ${rv}: ${(await sql(lab, o.dataNodes, `SELECT id, name, created, deleted FROM k3s.kine WHERE id = ${rv}`)) || '(none)'}`);
    out.push(`  kine rows of the key: ${await keyRows(lab, o.dataNodes, r.name)}`);
    for (const lb of o.lbs) {
      let last = '';
      for (const s of o.samples.get(lb) ?? []) {
        if (s.t < from || s.t > to || s.state === last) continue;
        last = s.state;
        out.push(`  ${lb} ${iso(s.t)}: ${s.state}`);
      }
      const j = await lab.exec(lb, ['sh', '-c', `journalctl -t haproxy --since @${Math.floor(from / 1000)} --until @${Math.ceil(to / 1000)} -o short-precise --no-pager | grep -v k3s_servers | tail -n 40`], { allowFailure: true });
      for (const l of j.stdout.split('\n').filter((x) => x.trim())) out.push(`  ${lb} haproxy: ${l}`);
    }
    for (const s of o.servers) {
      const j = await lab.exec(s, ['sh', '-c', `journalctl -u k3s --since @${Math.floor(from / 1000)} --until @${Math.ceil(to / 1000)} -o short-precise --no-pager | grep -iE 'error|fail|invalid|deadlock|wsrep|refused|reset|broken' | tail -n 15`], { allowFailure: true });
      for (const l of j.stdout.split('\n').filter((x) => x.trim())) out.push(`  ${s}: ${l.slice(0, 400)}`);
    }
  }
  return out;
}

/**
 * One paragraph per ADDED event out of creation order (the first `max`
 * pairs "A then B"): for each name, what the writer was told (acknowledged
 * with which resourceVersion, or the error) and when, every event the watch
 * had for it (position and resourceVersion), and its rows in the kine table.
 * Tells a create that was refused at the time and committed later (its row's
 * id above the later creates') from a watch that delivered an event twice
 * (the same resourceVersion seen at two positions).
 */
export async function explainOrder(
  lab: Lab,
  o: { records: WriteRecord[]; events: WatchEvent[]; pairs: string[]; faultMs: number; dataNodes: readonly string[]; max?: number },
): Promise<string[]> {
  const out: string[] = [];
  const byName = new Map(o.records.map((r) => [r.name, r]));
  for (const pair of o.pairs.slice(0, o.max ?? 3)) {
    out.push(pair.includes(' then ') ? `out of order: ${pair}` : `refused, yet created: ${pair}`);
    for (const name of pair.split(' then ')) {
      const r = byName.get(name);
      const told = !r ? 'never sent' : r.ok ? `acknowledged rv ${r.resourceVersion}` : `refused (${(r.error ?? '').slice(0, 160)})`;
      const since = r ? Math.round(r.sentMs - o.faultMs) : 0;
      out.push(`  ${name}: sent fault ${r ? `${since >= 0 ? '+' : ''}${since} ms, answered after ${Math.round(r.doneMs - r.sentMs)} ms` : '?'}, ${told}`);
      const seen = o.events.map((e, i) => ({ e, i })).filter(({ e }) => e.name === name).map(({ e, i }) => `#${i} ${e.type} rv ${e.resourceVersion}`);
      out.push(`  ${name}: watch events ${seen.join(', ') || 'none'} (of ${o.events.length})`);
      out.push(`  ${name}: kine rows ${await keyRows(lab, o.dataNodes, name)}`);
    }
  }
  return out;
}
