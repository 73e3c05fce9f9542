import { request as httpsRequest } from 'node:https';
import { KubeApiError, KubeClient } from '../src/kube/client.js';
import { dirname } from 'node:path';
import type { Lab } from './index.js';
import { GALERA_DRAIN_FLAG } from '../src/render/galera.js';
import { SHOW_NGINX_WRITER, SHOW_WRITER, parseNginxWriter } from '../src/phases/galera-writer.js';
import { parseWriterTable } from '../src/render/haproxy-datastore.js';
import { gapAccount, gapSnapshot, type GapAccount } from './galera-gaps.js';
import { explainLost, explainOrder, LbSampler } from './galera-forensics.js';

/**
 * The proof under write load (issue 14): a writer creates objects through the
 * API one after another, a watch opened before the fault records every
 * event, and afterwards every acknowledged write must exist, the watch must
 * have seen every ADDED event in order with resourceVersion never going
 * down, kine must have written no gap row and logged no GAP line. Used by
 * test/lab/galera.test.ts and bench/galera.ts.
 */

export const DRILL_NAMESPACE = 'galera-drill';

export interface WriteRecord {
  name: string;
  index: number;
  /** performance.now() when the request was sent and when it was answered. */
  sentMs: number;
  doneMs: number;
  ok: boolean;
  resourceVersion?: string;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A performance.now() moment as wall-clock ms (Date.now()'s scale), to match the machines' journals (they share this host's clock). */
export const wallMs = (monotonicMs: number): number => Math.round(performance.timeOrigin + monotonicMs);

export async function ensureNamespace(client: KubeClient): Promise<void> {
  try {
    await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: DRILL_NAMESPACE } });
  } catch (e) {
    if (!(e instanceof KubeApiError && e.status === 409)) throw e;
  }
}

/** Creates ConfigMaps `PREFIX-N` one after another until stopped. */
export class Writer {
  readonly records: WriteRecord[] = [];
  #stop = false;
  #done: Promise<void> | null = null;
  constructor(
    private readonly client: KubeClient,
    readonly prefix: string,
  ) {}

  start(): void {
    this.#done = (async () => {
      for (let i = 0; !this.#stop; i++) {
        const name = `${this.prefix}-${i}`;
        const sentMs = performance.now();
        try {
          const obj = await this.client.request<{ metadata: { resourceVersion: string } }>('POST', `/api/v1/namespaces/${DRILL_NAMESPACE}/configmaps`, {
            apiVersion: 'v1',
            kind: 'ConfigMap',
            metadata: { name, labels: { drill: this.prefix } },
            data: { i: String(i) },
          });
          this.records.push({ name, index: i, sentMs, doneMs: performance.now(), ok: true, resourceVersion: obj.metadata.resourceVersion });
        } catch (e) {
          this.records.push({ name, index: i, sentMs, doneMs: performance.now(), ok: false, error: e instanceof Error ? e.message : String(e) });
          await sleep(50); // a refused connection answers at once: do not spin
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }

  get acked(): WriteRecord[] {
    return this.records.filter((r) => r.ok);
  }

  /** The longest time without an acknowledged write between `fromMs` and the last record (ms). */
  longestGapMs(fromMs: number): number {
    let last = fromMs;
    let worst = 0;
    for (const r of this.acked) {
      if (r.doneMs < fromMs) continue;
      worst = Math.max(worst, r.doneMs - last);
      last = r.doneMs;
    }
    return worst;
  }
}

/**
 * The API's availability apart from the datastore: GET /version through the
 * virtual IP every 100 ms (answered by the API server without kine). The
 * longest time without an answer is the API outage of a fault.
 */
export class ApiProbe {
  readonly okMs: number[] = [];
  #stop = false;
  #done: Promise<void> | null = null;
  readonly #client: KubeClient;
  constructor(client: KubeClient) {
    // One second per request and a fresh connection each time, so a request
    // stuck on the dead load balancer does not hide the moment the API is back.
    this.#client = new KubeClient(client.creds, { timeoutMs: 1000, freshConnections: true });
  }

  start(): void {
    this.#done = (async () => {
      while (!this.#stop) {
        try {
          await this.#client.request('GET', '/version');
          this.okMs.push(performance.now());
        } catch {
          // counted as the absence of an answer
        }
        await sleep(100);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }

  /** The longest time without an answer from `fromMs` on (ms). */
  longestGapMs(fromMs: number): number {
    let last = fromMs;
    let worst = 0;
    for (const t of this.okMs) {
      if (t < fromMs) continue;
      worst = Math.max(worst, t - last);
      last = t;
    }
    return worst;
  }
}

export interface WatchEvent {
  type: string;
  name: string;
  resourceVersion: string;
}

/** A watch of the drill namespace's ConfigMaps that re-watches from the last resourceVersion when its connection drops (as client-go does). */
export class Watcher {
  readonly events: WatchEvent[] = [];
  /** Times the stream ended and was reopened; and what the API answered when a re-watch was refused. */
  reconnects = 0;
  readonly refusals: string[] = [];
  #stop = false;
  #req: ReturnType<typeof httpsRequest> | null = null;
  #loop: Promise<void> | null = null;
  #rv: string;
  constructor(
    private readonly client: KubeClient,
    fromResourceVersion: string,
    private readonly labelSelector: string,
  ) {
    this.#rv = fromResourceVersion;
  }

  start(): void {
    this.#loop = (async () => {
      while (!this.#stop) {
        await this.#once().catch(() => undefined);
        if (this.#stop) break;
        this.reconnects++;
        await sleep(200);
      }
    })();
  }

  #once(): Promise<void> {
    const url = new URL(this.client.creds.server);
    const path = `/api/v1/namespaces/${DRILL_NAMESPACE}/configmaps?watch=true&resourceVersion=${encodeURIComponent(this.#rv)}&labelSelector=${encodeURIComponent(this.labelSelector)}`;
    return new Promise<void>((resolve, reject) => {
      const req = httpsRequest(
        { method: 'GET', host: url.hostname, port: url.port || 443, path, ca: this.client.creds.ca, cert: this.client.creds.cert, key: this.client.creds.key, agent: false },
        (res) => {
          if (res.statusCode !== 200) {
            this.refusals.push(`HTTP ${res.statusCode}`);
            res.resume();
            res.on('end', resolve);
            return;
          }
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buf += chunk;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              if (!line.trim()) continue;
              const ev = JSON.parse(line) as { type: string; object: { kind?: string; code?: number; message?: string; metadata?: { name: string; resourceVersion: string } } };
              if (ev.type === 'ERROR') {
                // 410 Gone: the resourceVersion was compacted away; the watch cannot go on without a gap.
                this.refusals.push(`${ev.object.code ?? '?'} ${ev.object.message ?? ''}`);
                continue;
              }
              const m = ev.object.metadata;
              if (!m) continue;
              this.events.push({ type: ev.type, name: m.name, resourceVersion: m.resourceVersion });
              this.#rv = m.resourceVersion;
            }
          });
          res.on('end', resolve);
          res.on('error', reject);
        },
      );
      this.#req = req;
      // TCP keepalive after 1 s of silence, as client-go's HTTP/2 health ping
      // does: when the VIP moves back, a stream through the other load
      // balancer goes silent rather than failing; the probe draws the reset
      // and the watch resumes from its last resourceVersion.
      req.on('socket', (sock) => sock.setKeepAlive(true, 1000));
      req.on('error', reject);
      req.end();
    });
  }

  async stop(): Promise<void> {
    this.#stop = true;
    this.#req?.destroy();
    await this.#loop;
  }
}

export interface DrillVerdict {
  acked: number;
  /** Acknowledged writes that do not exist afterwards. */
  lost: string[];
  /** Acknowledged writes whose ADDED event the watch never delivered. */
  unseen: string[];
  /**
   * ADDED events of acknowledged creates out of creation order, and
   * resourceVersion going down (watch or writer). A create the writer was told
   * failed may still take effect, then or later (a request held in a cut
   * network and delivered after the client gave up): its event is not in the
   * acknowledged order, and is counted in refusedButCreated instead.
   */
  outOfOrder: string[];
  refusedButCreated: string[];
  rvWentDown: string[];
  refusals: string[];
  reconnects: number;
}

/** Compare what the writer was told with what exists and what the watch saw. */
export async function verdict(client: KubeClient, writer: Writer, watch: Watcher): Promise<DrillVerdict> {
  // Bounded retries: a rejoining node may still cost the API a moment.
  const path = `/api/v1/namespaces/${DRILL_NAMESPACE}/configmaps?labelSelector=${encodeURIComponent(`drill=${writer.prefix}`)}`;
  let list: { items: { metadata: { name: string } }[] } | undefined;
  for (let attempt = 0; list === undefined; attempt++) {
    try {
      list = await client.request<{ items: { metadata: { name: string } }[] }>('GET', path);
    } catch (e) {
      if (attempt >= 20) throw e;
      await sleep(1000);
    }
  }
  const exists = new Set(list.items.map((i) => i.metadata.name));
  const acked = writer.acked;
  const lost = acked.filter((r) => !exists.has(r.name)).map((r) => r.name);
  const added = watch.events.filter((e) => e.type === 'ADDED');
  const seen = new Set(added.map((e) => e.name));
  const unseen = acked.filter((r) => !seen.has(r.name)).map((r) => r.name);
  const outOfOrder: string[] = [];
  const index = (n: string) => Number(n.slice(writer.prefix.length + 1));
  const ackedNames = new Set(acked.map((r) => r.name));
  const addedAcked = added.filter((e) => ackedNames.has(e.name));
  for (let i = 1; i < addedAcked.length; i++) if (index(addedAcked[i]!.name) <= index(addedAcked[i - 1]!.name)) outOfOrder.push(`${addedAcked[i - 1]!.name} then ${addedAcked[i]!.name}`);
  const refusedButCreated = [...new Set(added.filter((e) => !ackedNames.has(e.name)).map((e) => e.name))];
  const rvWentDown: string[] = [];
  for (let i = 1; i < watch.events.length; i++) {
    if (BigInt(watch.events[i]!.resourceVersion) <= BigInt(watch.events[i - 1]!.resourceVersion)) rvWentDown.push(`watch: ${watch.events[i - 1]!.resourceVersion} then ${watch.events[i]!.resourceVersion}`);
  }
  for (let i = 1; i < acked.length; i++) {
    if (BigInt(acked[i]!.resourceVersion!) <= BigInt(acked[i - 1]!.resourceVersion!)) rvWentDown.push(`writes: ${acked[i - 1]!.name} rv ${acked[i - 1]!.resourceVersion}, ${acked[i]!.name} rv ${acked[i]!.resourceVersion}`);
  }
  return { acked: acked.length, lost, unseen, outOfOrder, refusedButCreated, rvWentDown, refusals: watch.refusals, reconnects: watch.reconnects };
}

/** kine's GAP lines in every server's journal since `since` (a `journalctl --since` value). */
export async function gapLines(lab: Lab, servers: readonly string[], since: string): Promise<string[]> {
  const out: string[] = [];
  for (const s of servers) {
    const r = await lab.exec(s, ['sh', '-c', `journalctl -u k3s --since '${since}' --no-pager -o cat | grep 'GAP ' || true`]);
    out.push(...r.stdout.split('\n').filter((l) => l.trim()).map((l) => `${s}: ${l}`));
  }
  return out;
}

/** kine's gap fill rows, counted on a data node over its socket. */
export async function gapRows(lab: Lab, node: string): Promise<number> {
  const r = await lab.exec(node, ['mariadb', '--batch', '--skip-column-names', '-e', "SELECT COUNT(*) FROM k3s.kine WHERE name LIKE 'gap-%'"]);
  return Number(r.stdout.trim());
}

/** The Galera view of one node: size, state, status (null when it does not answer). */
export async function galeraState(lab: Lab, node: string): Promise<{ size: number; state: string; status: string } | null> {
  const r = await lab.exec(node, ['sh', '-c', "timeout 5 mariadb --batch --skip-column-names -e \"SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size','wsrep_local_state_comment','wsrep_cluster_status')\""], { allowFailure: true });
  if (r.code !== 0) return null;
  const kv = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split('\t') as [string, string]));
  return { size: Number(kv.wsrep_cluster_size), state: kv.wsrep_local_state_comment ?? '', status: kv.wsrep_cluster_status ?? '' };
}

/** The load balancer kind the lab's cluster runs (the lab makes HAProxy; a test may apply nginx). */
export type LbKind = 'haproxy' | 'nginx';

/**
 * The node the load balancer on `lb` sends datastore connections to, or null:
 * HAProxy's writer table, or the writer file of nginx's k8s-ha-lbcheck.
 */
export async function writerOf(lab: Lab, lb: string, kind: LbKind = 'haproxy'): Promise<string | null> {
  const r = await lab.exec(lb, ['sh', '-c', (kind === 'nginx' ? SHOW_NGINX_WRITER : SHOW_WRITER).text], { allowFailure: true });
  return kind === 'nginx' ? parseNginxWriter(r.stdout, ['infra1', 'infra2']) : parseWriterTable(r.stdout);
}

/** The infrastructure machine that holds the virtual IP now, or null. */
export async function vipHolder(lab: Lab, machines: readonly string[] = ['infra1', 'infra2']): Promise<string | null> {
  const vip = lab.virtualIP;
  if (!vip) return null;
  for (const m of machines) {
    const r = await lab.exec(m, ['ip', '-o', '-4', 'addr', 'show'], { allowFailure: true });
    if (r.stdout.includes(` ${vip}/`)) return m;
  }
  return null;
}

/**
 * Make `target` the writer: drain the current writer (its check answers 503,
 * the load balancers move the writer, as for maintenance), wait until every
 * load balancer names `target`, then undrain. No-op when it already is.
 */
export async function moveWriterTo(lab: Lab, target: string, lbs: readonly string[] = ['infra1', 'infra2'], timeoutMs = 30_000, kind: LbKind = 'haproxy'): Promise<void> {
  const current = await writerOf(lab, lbs[0]!, kind);
  if (current === target || current === null) return;
  await lab.exec(current, ['sh', '-c', `mkdir -p ${dirname(GALERA_DRAIN_FLAG)} && touch ${GALERA_DRAIN_FLAG}`]);
  try {
    const until = Date.now() + timeoutMs;
    for (;;) {
      // The other load balancer learns the writer from the peers, or on its first connection.
      if ((await writerOf(lab, lbs[0]!, kind)) === target) break;
      if (Date.now() > until) throw new Error(`the writer did not move from ${current} to ${target} within ${timeoutMs / 1000} s`);
      await sleep(250);
    }
  } finally {
    await lab.exec(current, ['rm', '-f', GALERA_DRAIN_FLAG]);
  }
}

export type Fault = 'kill-writer' | 'freeze-writer' | 'cut-writer' | 'kill-machine';

/** What a fault does to the writer data node `w` (on the lab machine of that name). */
export const FAULTS: Record<Fault, { what: string; inject: (lab: Lab, w: string) => Promise<void>; recover: (lab: Lab, w: string) => Promise<void> }> = {
  'kill-writer': {
    what: "the writer's mariadbd killed (SIGKILL; systemd restarts it and it rejoins by IST)",
    inject: async (lab, w) => void (await lab.exec(w, ['systemctl', 'kill', '-s', 'KILL', 'mariadb'])),
    recover: async () => undefined,
  },
  'freeze-writer': {
    what: "the writer's mariadbd frozen (SIGSTOP) for 8 s: connections stay open, nothing answers",
    inject: async (lab, w) => void (await lab.exec(w, ['sh', '-c', 'kill -STOP $(pidof mariadbd)'])),
    recover: async (lab, w) => void (await lab.exec(w, ['sh', '-c', 'kill -CONT $(pidof mariadbd)'])),
  },
  'cut-writer': {
    what: "the writer's machine cut off the network (its load balancer and data node) for 8 s",
    inject: (lab, w) => lab.cut(w),
    recover: (lab, w) => lab.heal(w),
  },
  'kill-machine': {
    what: 'the whole infrastructure machine of the writer powered off hard (its load balancer, the virtual IP holder, and its data node)',
    inject: (lab, w) => lab.stop(w, { hard: true }),
    recover: (lab, w) => lab.start(w),
  },
};

export interface FaultResult {
  fault: Fault;
  writer: string;
  /** Longest time without an acknowledged write from the fault on (ms). */
  writeGapMs: number;
  /** Longest time without an answer to GET /version through the virtual IP from the fault on (ms). */
  apiOutageMs: number;
  failedWrites: number;
  verdict: DrillVerdict;
  /** For the first unseen writes: their resourceVersion and the watch events around it. */
  unseenDetail: string[];
  /** For the first lost writes: what the kine table, the load balancers and the servers show (lab/galera-forensics.ts). */
  lostDetail: string[];
  /** For the first ADDED events out of creation order: what the writer was told of each, where the watch had it, and its kine rows. */
  orderDetail: string[];
  gapLines: string[];
  /** Gap rows with an id above the highest before the drill (a count would drop when kine compacts an old one away). */
  newGapRows: number;
  /** The new gap rows and what burnt their ids (lab/galera-gaps.ts). */
  gaps: GapAccount;
}

/** journalctl's --since for "a second ago" on this host (the machines share its clock). */
export function journalSince(): string {
  return new Date(Date.now() - 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

/**
 * One fault under write load: a watch from now, the writer for `beforeMs`,
 * the fault for `holdMs`, recovery, writes for `afterMs` more, then the
 * verdict. `writerNode` names the current writer (read from HAProxy).
 */
export async function runFault(
  lab: Lab,
  client: KubeClient,
  fault: Fault,
  o: { writerNode: string; servers: string[]; prefix: string; beforeMs?: number; holdMs?: number; afterMs?: number },
): Promise<FaultResult> {
  const other = ['infra1', 'infra2'].find((n) => n !== o.writerNode)!;
  const since = journalSince();
  const gaps0 = await gapSnapshot(lab, other);
  await ensureNamespace(client);
  const list = await client.request<{ metadata: { resourceVersion: string } }>('GET', `/api/v1/namespaces/${DRILL_NAMESPACE}/configmaps?limit=1`);
  const watch = new Watcher(client, list.metadata.resourceVersion, `drill=${o.prefix}`);
  watch.start();
  const writer = new Writer(client, o.prefix);
  writer.start();
  const probe = new ApiProbe(client);
  probe.start();
  const lbs = ['infra1', 'infra2'];
  const sampler = new LbSampler(lab, lbs);
  await sampler.start();
  await sleep(o.beforeMs ?? 2000);
  const t0 = performance.now();
  await FAULTS[fault].inject(lab, o.writerNode);
  await sleep(o.holdMs ?? 8000);
  await FAULTS[fault].recover(lab, o.writerNode);
  await sleep(o.afterMs ?? 4000);
  await writer.stop();
  await probe.stop();
  // The watch may lag a reconnect behind: give it the time to catch up with the last write.
  const lastAcked = writer.acked.at(-1)?.name;
  const until = Date.now() + 20_000;
  while (lastAcked && !watch.events.some((e) => e.name === lastAcked) && Date.now() < until) await sleep(250);
  await watch.stop();
  const samples = await sampler.stop();
  const v = await verdict(client, writer, watch);
  const lostSet = new Set(v.lost);
  const lostDetail = v.lost.length === 0 ? [] : await explainLost(lab, { lost: writer.acked.filter((r) => lostSet.has(r.name)), faultMs: t0, dataNodes: [other, o.writerNode], lbs, servers: o.servers, samples });
  const gaps = await gapAccount(lab, other, gaps0);
  const rvOf = new Map(writer.acked.map((r) => [r.name, r.resourceVersion]));
  const unseenDetail = v.unseen.slice(0, 6).map((n) => {
    const rv = BigInt(rvOf.get(n) ?? '0');
    const before = watch.events.filter((e) => BigInt(e.resourceVersion) < rv).at(-1);
    const after = watch.events.find((e) => BigInt(e.resourceVersion) > rv);
    return `${n} rv ${rv}: watch had ${before?.name}@${before?.resourceVersion} then ${after?.name}@${after?.resourceVersion}`;
  });
  // Out-of-order acknowledged creates, and the refused creates that took effect (the first few), explained from the run.
  const orderPairs = [...v.outOfOrder, ...v.refusedButCreated.slice(0, 2)];
  const orderDetail = orderPairs.length === 0 ? [] : await explainOrder(lab, { records: writer.records, events: watch.events, pairs: orderPairs, faultMs: t0, dataNodes: [other, o.writerNode] });
  return {
    unseenDetail,
    lostDetail,
    orderDetail,
    fault,
    writer: o.writerNode,
    writeGapMs: Math.round(writer.longestGapMs(t0)),
    apiOutageMs: Math.round(probe.longestGapMs(t0)),
    failedWrites: writer.records.filter((r) => !r.ok).length,
    verdict: v,
    gapLines: await gapLines(lab, o.servers, since),
    newGapRows: gaps.gapIds.length,
    gaps,
  };
}
