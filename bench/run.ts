import type { BenchResult } from './result.js';
import { benchPlanMemory } from './plan-memory.js';
import { benchStartup } from './startup.js';

/**
 * `npm run bench`: every benchmark, one after another, then a table. Lab
 * benchmarks need root and the lab image; each says why when it cannot run.
 *   npm run bench -- plan        only the benchmarks whose name contains "plan"
 */
type Bench = { name: string; run: () => Promise<BenchResult[]>; needsRoot?: boolean };

const benches: Bench[] = [
  { name: 'startup', run: benchStartup },
  { name: 'plan-memory', run: benchPlanMemory },
];

async function loadOptional(): Promise<void> {
  const optional: [string, string, string][] = [
    ['lab-up', './lab-up.js', 'benchLabUp'],
    ['plan-ssh', './plan-ssh.js', 'benchPlanSsh'],
    ['infra', './infra.js', 'benchInfra'],
    ['k3s', './k3s.js', 'benchK3s'],
    ['metallb', './metallb.js', 'benchMetallb'],
    ['galera', './galera.js', 'benchGalera'],
    ['status-page', './status-page.js', 'benchStatusPage'],
    ['backup', './backup.js', 'benchBackup'],
  ];
  for (const [name, path, fn] of optional) {
    try {
      const mod = (await import(path)) as Record<string, () => Promise<BenchResult[]>>;
      if (typeof mod[fn] === 'function') benches.push({ name, run: mod[fn]!, needsRoot: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
    }
  }
}

async function main(): Promise<void> {
  await loadOptional();
  const filter = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const rows: (BenchResult & { bench: string; meets?: boolean })[] = [];
  let failed = 0;
  for (const b of benches) {
    if (filter.length && !filter.some((f) => b.name.includes(f))) continue;
    if (b.needsRoot && process.getuid?.() !== 0) {
      console.log(`${b.name}: skipped (needs root for the lab)`);
      continue;
    }
    console.log(`${b.name}: running`);
    try {
      for (const r of await b.run()) {
        const meets = r.target === undefined ? undefined : (r.better ?? 'lower') === 'lower' ? r.value <= r.target : r.value >= r.target;
        rows.push({ ...r, bench: b.name, meets });
        console.log(`  ${r.name}: ${r.value} ${r.unit}${r.target !== undefined ? ` (target ${(r.better ?? 'lower') === 'lower' ? '≤' : '≥'} ${r.target} ${r.unit}: ${meets ? 'met' : 'NOT met'})` : ''}${r.note ? ` — ${r.note}` : ''}`);
      }
    } catch (e) {
      failed++;
      console.log(`  FAILED: ${(e as Error).message}`);
    }
  }
  console.log('\n| benchmark | figure | target |\n|---|---|---|');
  for (const r of rows) console.log(`| ${r.name} | ${r.value} ${r.unit} | ${r.target !== undefined ? `${(r.better ?? 'lower') === 'lower' ? '≤' : '≥'} ${r.target} ${r.unit} (${r.meets ? 'met' : 'not met'})` : '—'} |`);
  process.exitCode = failed ? 1 : 0;
}

await main();
