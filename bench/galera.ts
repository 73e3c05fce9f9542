import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { AnyPhase } from '../src/engine/phase.js';
import { applyPipeline } from '../src/cluster/pipelines.js';
import { ClusterRun, type Deployment } from '../src/cluster/open.js';
import { clientFor, fetchKubeconfigFromAny } from '../src/kube/fetch.js';
import { labUp, type Lab } from '../lab/index.js';
import { waitFor } from '../lab/testing.js';
import { onBenchLab } from './lab.js';
import { galeraState, moveWriterTo, runFault, vipHolder, writerOf, type Fault, type LbKind } from '../lab/galera-drill.js';
import { PlanChangedError } from '../src/engine/engine.js';
import { LAB_K3S } from '../lab/components.js';
import type { BenchResult } from './result.js';

const NAME = 'benchgal';
const NODES = ['infra1', 'infra2'];
const SERVERS = ['server1', 'server2'];
const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

async function fullSize(lab: Lab): Promise<void> {
  await waitFor('both data nodes Synced in a 3-member primary component', 180_000, async () => {
    const st = await Promise.all(NODES.map((n) => galeraState(lab, n)));
    return st.every((s) => s?.size === 3 && s.state === 'Synced' && s.status === 'Primary') ? true : null;
  });
}

/**
 * One SQL target's write cost, measured from server1 with the mariadb
 * client: `n` single-row autocommit INSERTs in a kine-like table one after
 * another (latency: the mean per insert), then 8 clients doing the same at
 * once (throughput). The client's start-up is measured separately and taken off.
 */
async function sqlWrites(lab: Lab, target: { host: string; port: number }, table: string, n: number): Promise<{ latencyMs: number; perSecond: number }> {
  const client = `mariadb -h ${target.host} -P ${target.port} -u bench -pbench --batch --skip-column-names bench`;
  await lab.exec('server1', ['sh', '-c', `${client} -e 'DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(630), value MEDIUMBLOB) ENGINE=InnoDB'`]);
  const script = (tag: string) => Array.from({ length: n }, (_, i) => `INSERT INTO ${table} (name, value) VALUES ('/registry/bench/${tag}-${i}', REPEAT('x', 512));`).join('\n') + '\n';
  const time = async (cmd: string, input?: string): Promise<number> => {
    const r = await lab.exec('server1', ['sh', '-c', `s=$(date +%s%N); ${cmd}; e=$(date +%s%N); echo $(( (e - s) / 1000 ))`], { ...(input !== undefined ? { input } : {}), timeoutMs: 600_000 });
    return Number(r.stdout.trim().split('\n').at(-1)) / 1000;
  };
  const startup = await time(`${client} -e 'SELECT 1' >/dev/null`);
  const seq = (await time(`${client}`, script('seq'))) - startup;
  await lab.exec('server1', ['sh', '-c', `for c in 1 2 3 4 5 6 7 8; do printf '%s' "$(cat)" > /tmp/bench-$c.sql; done`], { input: script('par') });
  const par = (await time(`for c in 1 2 3 4 5 6 7 8; do ${client} < /tmp/bench-$c.sql & done; wait`)) - startup;
  return { latencyMs: seq / n, perSecond: (8 * n) / (par / 1000) };
}

/**
 * The Galera topology on the lab (two infrastructure machines, each HAProxy
 * + Galera node, the VIP between them, garbd on agent1) with the lab's k3s:
 * the write gap of each fault under continuous API writes (goal ≤ 5 s), the
 * API outage when a whole infrastructure machine dies (goal ≤ 3 s), what
 * each fault did to acknowledged writes, and write latency/throughput of a
 * single MariaDB beside Galera (directly and through HAProxy) in one run.
 */
export async function benchGalera(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  await onBenchLab(NAME, { labK3s: true }, async () => {
    const lab = await labUp({ name: NAME, galera: true, servers: 2, agents: 1 });
    try {
      const file = join(lab.dir, 'bench-galera.yaml');
      const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, unknown> & { k3s: Record<string, unknown> };
      delete doc.metallb;
      doc.k3s = { ...doc.k3s, install: { source: 'local', path: LAB_K3S } };
      writeFileSync(file, stringify(doc));
      const phases: AnyPhase<Deployment>[] = applyPipeline().filter((p) => p.id !== 'metallb');
      // Every apply's events, timed, in one file beside the results: a slow or failed apply explains itself.
      const eventLog = join(process.env.K8S_HA_BENCH_DUMP_DIR ?? '/tmp', `bench-galera-events-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
      const open = () => ClusterRun.open(file, { connect: (h) => lab.connect(h.name), phases, events: (e) => appendFileSync(eventLog, `${new Date().toISOString()} ${JSON.stringify(e)}\n`) });
      const apply = async () => {
        const run = await open();
        try {
          return await run.apply();
        } finally {
          await run.close();
        }
      };
      const t0 = Date.now();
      await apply().catch(async (e: unknown) => {
        // What the machines did meanwhile, kept for the reader (the lab goes down next).
        const dump = join(process.env.K8S_HA_BENCH_DUMP_DIR ?? '/tmp', `bench-galera-bare-apply-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
        const since = `@${Math.floor(t0 / 1000)}`;
        const parts: string[] = [`the bare apply failed: ${e instanceof Error ? e.message : String(e)}`];
        for (const m of [...NODES, ...SERVERS, 'agent1']) {
          const r = await lab.exec(m, ['sh', '-c', `journalctl --since ${since} --no-pager -o short-precise | grep -v -E 'sshd\\[|session-' | tail -n 3000`], { allowFailure: true, timeoutMs: 60_000 });
          parts.push(`===== ${m}\n${r.stdout}`);
        }
        writeFileSync(dump, parts.join('\n'));
        console.error(`galera: the bare apply failed; the machines' journals since it began are in ${dump}`);
        throw e;
      });
      out.push({ name: 'bare machines to k3s on Galera (2 HAProxy + Galera machines, VIP, garbd, 2 servers, 1 agent)', value: round((Date.now() - t0) / 1000, 1), unit: 's' });
      await fullSize(lab);
      const run = await open();
      const kc = (await fetchKubeconfigFromAny(run.deployment, (n) => run.engine.host(n))).kubeconfig;
      await run.engine.close();
      const client = clientFor(kc, { timeoutMs: 5000 });
      await client.waitForReadyNodes(3, { timeoutMs: 120_000 });

      // K8S_HA_BENCH_GALERA_LB=nginx: the faults through nginx (k8s-ha-lbcheck
      // routing the datastore), switched from HAProxy by apply as a user would.
      const kind: LbKind = process.env.K8S_HA_BENCH_GALERA_LB === 'nginx' ? 'nginx' : 'haproxy';
      if (kind === 'nginx') {
        const sw = parse(readFileSync(file, 'utf8')) as { loadBalancer: Record<string, unknown> };
        sw.loadBalancer = { ...sw.loadBalancer, kind: 'nginx' };
        writeFileSync(file, stringify(sw));
        const t1 = Date.now();
        await apply().catch(async (e: unknown) => {
          // A server restarting under the switch: apply stops and says to apply again.
          if (!(e instanceof PlanChangedError)) throw e;
          return apply();
        });
        out.push({ name: 'HAProxy to nginx on the Galera lab, by apply', value: round((Date.now() - t1) / 1000, 1), unit: 's' });
        await fullSize(lab);
        await client.waitForReadyNodes(3, { timeoutMs: 120_000 });
        await waitFor('both nginx load balancers name one writer', 60_000, async () => {
          const [a, b] = await Promise.all(NODES.map((n) => writerOf(lab, n, 'nginx')));
          return a && a === b ? true : null;
        });
      }
      const via = kind === 'nginx' ? ', through nginx' : '';

      const faults: [Fault, string, number][] = [
        ['kill-writer', 'write gap, writer mariadbd killed', 5000],
        ['freeze-writer', 'write gap, writer mariadbd frozen', 5000],
        ['cut-writer', 'write gap, writer machine cut off', 5000],
        ['kill-machine', 'write gap, whole infrastructure machine (LB + VIP holder + writer) powered off', 5000],
      ];
      // K8S_HA_BENCH_GALERA_FAULTS=freeze-writer,kill-writer picks faults,
      // K8S_HA_BENCH_GALERA_REPEAT=N runs each N times on the one lab (a
      // larger sample of the rare loss; README "Galera datastore").
      const only = (process.env.K8S_HA_BENCH_GALERA_FAULTS ?? '').split(',').map((x) => x.trim()).filter(Boolean);
      const repeat = Math.max(1, Number(process.env.K8S_HA_BENCH_GALERA_REPEAT ?? '1') || 1);
      const runs = faults.filter(([f]) => only.length === 0 || only.includes(f)).flatMap((f) => Array.from({ length: repeat }, (_, k) => [...f, k] as const));
      for (const [fault, label0, goal, k] of runs) {
        const label = `${label0}${via}${repeat > 1 ? ` (run ${k + 1} of ${repeat})` : ''}`;
        let w = (await writerOf(lab, 'infra1', kind)) ?? (await writerOf(lab, 'infra2', kind)) ?? 'infra1';
        if (fault === 'kill-machine') {
          // As the lab test: the machine powered off holds the VIP and the writer (the worst case).
          const holder = await vipHolder(lab);
          if (holder && NODES.includes(holder)) {
            await moveWriterTo(lab, holder, NODES, 30_000, kind);
            w = holder;
          }
        }
        // After a cut, writes go on for 12 s: the VIP fails back to the healed machine within them (as in the lab test).
        const r = await runFault(lab, client, fault, { writerNode: w, servers: SERVERS, prefix: `bench-${fault}-${k}`, ...(fault === 'cut-writer' ? { afterMs: 12_000 } : {}) });
        for (const l of [...r.lostDetail, ...r.orderDetail]) console.error(`[galera ${fault} ${k + 1}] ${l}`);
        const v = r.verdict;
        out.push({
          name: label,
          value: r.writeGapMs,
          unit: 'ms',
          target: goal,
          note: `${v.acked} writes acknowledged, ${r.failedWrites} refused, ${v.lost.length} acknowledged but lost, ${v.unseen.length} not seen by the watch, ${v.outOfOrder.length} out of order, ${v.refusedButCreated.length} refused yet created, GAP lines ${r.gapLines.length}, new gap rows ${r.newGapRows} (kine's INSERTs failed on its unique index ${r.gaps.duplicateInserts.length}, certification failures ${r.gaps.certFailures})`,
        });
        if (fault === 'kill-machine') {
          out.push({ name: `API outage (GET /version through the VIP), whole infrastructure machine powered off${via}`, value: r.apiOutageMs, unit: 'ms', target: 3000, note: `writer ${w}, moved to the VIP holder first` });
        }
        await apply();
        await fullSize(lab);
      }

      if (only.length > 0 || kind === 'nginx') return;
      // Write cost: a single MariaDB on agent1 (no replication) beside Galera.
      const agent = lab.machine('agent1').address;
      const s1 = lab.machine('server1').address;
      await lab.exec('agent1', ['sh', '-c', "printf '[mysqld]\\nbind-address = 0.0.0.0\\nport = 3306\\nskip-name-resolve\\ninnodb_autoinc_lock_mode = 2\\n' > /etc/mysql/mariadb.conf.d/90-bench.cnf && systemctl restart mariadb"]);
      const grant = `CREATE DATABASE IF NOT EXISTS bench; CREATE USER IF NOT EXISTS 'bench'@'${s1}' IDENTIFIED BY 'bench'; GRANT ALL ON bench.* TO 'bench'@'${s1}';`;
      await lab.exec('agent1', ['mariadb', '-e', grant]);
      await lab.exec('infra1', ['mariadb', '-e', grant]);
      const n = 300;
      const single = await sqlWrites(lab, { host: agent, port: 3306 }, 'w_single', n);
      const direct = await sqlWrites(lab, { host: lab.machine((await writerOf(lab, 'infra1')) ?? 'infra1').address, port: 3307 }, 'w_direct', n);
      const viaLb = await sqlWrites(lab, { host: lab.virtualIP!, port: 3306 }, 'w_lb', n);
      const note = `${n} single-row autocommit INSERTs of 512 B from server1; throughput with 8 clients at once`;
      out.push({ name: 'write latency, single MariaDB', value: round(single.latencyMs), unit: 'ms', note });
      out.push({ name: 'write latency, Galera writer directly', value: round(direct.latencyMs), unit: 'ms', note });
      out.push({ name: 'write latency, Galera through HAProxy on the VIP (what kine sees)', value: round(viaLb.latencyMs), unit: 'ms', note });
      out.push({ name: 'write throughput, single MariaDB', value: Math.round(single.perSecond), unit: 'rows/s', better: 'higher', note });
      out.push({ name: 'write throughput, Galera writer directly', value: Math.round(direct.perSecond), unit: 'rows/s', better: 'higher', note });
      out.push({ name: 'write throughput, Galera through HAProxy on the VIP', value: Math.round(viaLb.perSecond), unit: 'rows/s', better: 'higher', note });
    } finally {
      await lab.down();
    }
  });
  return out;
}
