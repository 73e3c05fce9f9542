import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import type { Lab } from '../lab/index.js';
import { withLab } from '../lab/testing.js';
import { ClusterRun } from '../src/cluster/open.js';
import { datastorePhase } from '../src/phases/datastore.js';
import { loadBalancerPhase } from '../src/phases/loadbalancer.js';
import { vipPhase } from '../src/phases/vip.js';
import type { BenchResult } from './result.js';
import { bulk, outage, probe, sample, startFakeApi, untilServed, type Attempt } from './infra-lab.js';

/**
 * The API path under failure, its failover and its cost, on lab machines
 * (see docs/performance.md for the method). One lab: infra + lb2 (VIP), two
 * servers running a TLS stand-in for the k3s API. Traffic goes only to lab
 * addresses; every run is bounded (a few seconds of sampling each).
 */
type InfraResult = BenchResult;

const PHASES = [loadBalancerPhase, vipPhase, datastorePhase];
type Lb = 'nginx-defaults' | 'nginx-k8s-ha-passive' | 'nginx-k8s-ha' | 'haproxy-k8s-ha';
type Failure = 'killed' | 'frozen' | 'cut';

// What nginx does when told nothing: the stream proxy with every timeout and
// passive-check setting at its default (connect 60 s, max_fails 1, fail_timeout 10 s).
const NGINX_DEFAULTS = (servers: string[]) => `user www-data;
worker_processes auto;
pid /run/nginx.pid;
include /etc/nginx/modules-enabled/*.conf;
events {}
stream {
    upstream k3s_servers {
${servers.map((s) => `        server ${s}:6443;`).join('\n')}
    }
    server {
        listen 6443;
        proxy_pass k3s_servers;
    }
}
`;

const SAMPLE = { everyMs: 50, durationMs: 6_000, failAtMs: 1_000, timeoutMs: 4_000 };

async function apply(lab: Lab, file: string): Promise<void> {
  const run = await ClusterRun.open(file, { env: process.env, phases: PHASES, connect: (h) => lab.connect(h.name) });
  try {
    await run.apply();
  } finally {
    await run.close();
  }
}

function setDoc(file: string, change: (doc: Record<string, Record<string, unknown>>) => void): void {
  const doc = parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
  change(doc);
  writeFileSync(file, stringify(doc));
}

async function useLb(lab: Lab, file: string, lb: Lb, servers: string[]): Promise<void> {
  setDoc(file, (d) => void (d.loadBalancer = { ...d.loadBalancer, kind: lb.startsWith('haproxy') ? 'haproxy' : 'nginx' }));
  await apply(lab, file);
  if (lb === 'nginx-defaults') {
    await lab.exec('infra', ['sh', '-c', 'cat > /etc/nginx/nginx.conf && nginx -t -q && systemctl reload nginx'], { input: NGINX_DEFAULTS(servers) });
  }
  // The rendered config with only nginx's passive checks (k8s-ha before
  // k8s-ha-lbcheck, or activeCheck: false); the next apply starts it again.
  if (lb === 'nginx-defaults' || lb === 'nginx-k8s-ha-passive') await lab.exec('infra', ['systemctl', 'stop', 'k8s-ha-lbcheck']);
  await sleep(1_000);
}

async function fail(lab: Lab, f: Failure): Promise<void> {
  if (f === 'killed') await lab.exec('server2', ['systemctl', 'kill', '--signal=SIGKILL', 'k8s-ha-fake-api']);
  else if (f === 'frozen') await lab.freeze('server2');
  else await lab.cut('server2');
}

async function restore(lab: Lab, f: Failure): Promise<void> {
  if (f === 'frozen') await lab.thaw('server2');
  if (f === 'cut') await lab.heal('server2');
  await startFakeApi(lab, 'server2');
  // nginx skips a failed server for fail_timeout (10 s); let every LB see it healthy again.
  await sleep(11_000);
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function latencies(address: string | string[], n: number): Promise<number[]> {
  const targets = Array.isArray(address) ? address : [address];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await probe(targets[i % targets.length]!, 6443, 2_000);
    if (r.ok) out.push(r.ms);
  }
  return out;
}

async function medianBulk(address: string | string[], runs: number): Promise<number> {
  const targets = Array.isArray(address) ? address : [address];
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const v = await bulk(targets[i % targets.length]!);
    if (v !== null) xs.push(v);
  }
  return percentile(xs, 50);
}

const r2 = (x: number) => Math.round(x * 100) / 100;

export async function benchInfra(): Promise<InfraResult[]> {
  const results: InfraResult[] = [];
  const out = await withLab({ name: 'bench', servers: 2, agents: 0, lb2: true }, async (lab) => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-bench-infra-'));
    try {
      const file = join(dir, 'cluster.yaml');
      writeFileSync(file, readFileSync(lab.clusterFile, 'utf8'));
      const servers = ['server1', 'server2'].map((s) => lab.machine(s).address);
      await Promise.all(['server1', 'server2'].map((s) => startFakeApi(lab, s)));
      const lbAddr = lab.machine('infra').address;
      await apply(lab, file);

      // Cost of the LB on a healthy path: new TLS connection + GET, sequential.
      await latencies(lbAddr, 50); // warm-up
      const direct = await latencies(servers, 1_000);
      const viaLb = await latencies(lbAddr, 1_000);
      const addP50 = (percentile(viaLb, 50) - percentile(direct, 50)) * 1000;
      const addP99 = (percentile(viaLb, 99) - percentile(direct, 99)) * 1000;
      results.push({ name: 'nginx LB: added latency p50 (new TLS connection + GET)', value: Math.round(addP50), unit: 'µs', target: 100, note: `direct p50 ${r2(percentile(direct, 50))} ms, via LB ${r2(percentile(viaLb, 50))} ms` });
      results.push({ name: 'nginx LB: added latency p99', value: Math.round(addP99), unit: 'µs', note: `direct p99 ${r2(percentile(direct, 99))} ms, via LB ${r2(percentile(viaLb, 99))} ms` });
      const bDirect = await medianBulk(servers, 6);
      const bLb = await medianBulk(lbAddr, 6);
      results.push({ name: 'nginx LB: throughput lost vs direct (32 MiB over TLS)', value: r2(Math.max(0, (1 - bLb / bDirect) * 100)), unit: '%', target: 5, note: `direct ${Math.round(bDirect)} MB/s, via LB ${Math.round(bLb)} MB/s` });

      // proxy_buffer_size (stream default 16k) against 64k: three rounds each,
      // alternating, on the same lab (figures on a 2-core host are noisy).
      const confPath = '/etc/nginx/nginx.conf';
      const rendered = (await lab.exec('infra', ['cat', confPath])).stdout;
      for (let round = 1; round <= 3; round++) {
        for (const size of ['16k', '64k']) {
          const conf = rendered.replace(/^(\s*)proxy_buffer_size \S+;\n/m, '').replace(/^(\s*)proxy_pass k3s_servers;$/m, `$1proxy_pass k3s_servers;\n$1proxy_buffer_size ${size};`);
          await lab.exec('infra', ['sh', '-c', `cat > ${confPath} && nginx -t -q && systemctl reload nginx`], { input: conf });
          await sleep(500);
          const d = await medianBulk(servers, 6);
          const v = await medianBulk(lbAddr, 6);
          results.push({ name: `nginx LB: throughput lost, proxy_buffer_size ${size}, round ${round}`, value: r2(Math.max(0, (1 - v / d) * 100)), unit: '%', note: `direct ${Math.round(d)} MB/s, via LB ${Math.round(v)} MB/s` });
        }
      }
      await lab.exec('infra', ['sh', '-c', `cat > ${confPath} && nginx -t -q && systemctl reload nginx`], { input: rendered });

      // Failures of server2 while a client opens a new connection every 50 ms.
      for (const lb of ['nginx-defaults', 'nginx-k8s-ha-passive', 'nginx-k8s-ha', 'haproxy-k8s-ha'] as const) {
        await useLb(lab, file, lb, servers);
        // Without the checker only the frozen case differs from nginx-k8s-ha.
        for (const f of lb === 'nginx-k8s-ha-passive' ? (['frozen'] as const) : (['killed', 'frozen', 'cut'] as const)) {
          let attempts: Attempt[];
          try {
            attempts = await sample(lbAddr, { ...SAMPLE, onFail: () => fail(lab, f) });
          } finally {
            await restore(lab, f);
          }
          const o = outage(attempts);
          const target = lb === 'haproxy-k8s-ha' ? (f === 'killed' ? 1 : 3) : f === 'killed' ? undefined : 3;
          const scored = lb === 'nginx-k8s-ha' || lb === 'haproxy-k8s-ha';
          results.push({ name: `${lb}, server ${f}: failed connections`, value: o.failed, unit: `of ${o.total}` });
          results.push({ name: `${lb}, server ${f}: outage`, value: o.outageS, unit: 's', ...(target !== undefined && scored ? { target } : {}), note: o.failed ? `attempts time out after ${SAMPLE.timeoutMs / 1000} s, so a hang counts at most that` : undefined });
        }
      }

      // VIP failover: the holder (infra) killed hard; time until the VIP serves again.
      await useLb(lab, file, 'nginx-k8s-ha', servers);
      for (const advert of ['1s', '500ms']) {
        setDoc(file, (d) => {
          const lbDoc = d.loadBalancer as Record<string, unknown>;
          lbDoc.virtualIP = { ...(lbDoc.virtualIP as Record<string, unknown>), advertInterval: advert };
        });
        await apply(lab, file);
        if ((await untilServed(lab.virtualIP!, 20_000)) === null) throw new Error('the VIP does not answer before the failover');
        // Both keepalived instances settled (infra MASTER) before the kill.
        await sleep(3_000);
        // Polled from the moment the kill is issued (stop() also waits for the machine to be gone).
        const stopping = lab.stop('infra', { hard: true });
        await sleep(100); // let the first probe see the dead holder, not a live one
        const took = await untilServed(lab.virtualIP!, 20_000, 50, 500);
        await stopping;
        results.push({ name: `VIP failover (advert_int ${advert}), primary LB killed`, value: took === null ? -1 : r2((took + 100) / 1000), unit: 's', target: 2, note: 'from the kill to the first answer through the VIP' });
        await lab.start('infra');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return results;
  });
  if (!out) throw new Error('the lab cannot run on this host (see the skip reason above)');
  return out;
}
