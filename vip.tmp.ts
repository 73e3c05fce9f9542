import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { openLab } from './lab/index.js';
import { ClusterRun } from './src/cluster/open.js';
import { datastorePhase } from './src/phases/datastore.js';
import { loadBalancerPhase } from './src/phases/loadbalancer.js';
import { vipPhase } from './src/phases/vip.js';
import { startFakeApi } from './bench/infra-lab.js';
import { measureVipFailover, LB_FAILURES } from './bench/infra-vip.js';

const lab = (await openLab(process.env.LAB ?? 'h12v'))!;
const dir = mkdtempSync(join(tmpdir(), 'h12v-'));
const file = join(dir, 'cluster.yaml');
writeFileSync(file, readFileSync(lab.clusterFile, 'utf8'));
const kinds = (process.env.KINDS ?? 'nginx,haproxy').split(',') as ('nginx' | 'haproxy')[];
const failures = (process.env.FAILURES ? process.env.FAILURES.split(',') : LB_FAILURES) as typeof LB_FAILURES;
await Promise.all(['server1', 'server2'].map((s) => startFakeApi(lab, s)));
for (const kind of kinds) {
  const doc = parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
  doc.loadBalancer = { ...doc.loadBalancer, kind, ...(process.env.ADVERT ? { virtualIP: { ...(doc.loadBalancer.virtualIP as object), advertInterval: process.env.ADVERT } } : {}) };
  writeFileSync(file, stringify(doc));
  const run = await ClusterRun.open(file, { env: process.env, phases: [loadBalancerPhase, vipPhase, datastorePhase], connect: (h) => lab.connect(h.name) });
  try { await run.apply(); } finally { await run.close(); }
  for (const f of failures) {
    const r = await measureVipFailover(lab, kind, f);
    console.log(kind, JSON.stringify(r));
  }
}
process.exit(0);
