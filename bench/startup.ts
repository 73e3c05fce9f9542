import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CliIO } from '../src/cli/io.js';
import type { BenchResult } from './result.js';

const REPO = resolve(import.meta.dirname, '..');
const BIN = join(REPO, 'bin/k8s-ha.js');
const SEED = join(REPO, 'examples/seed.yaml');
const RUNS = 11;

const ms = (n: number): number => Math.round(n * 10) / 10;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const TIME = '/usr/bin/time';

/**
 * A whole process started from the shell, as a user runs it: its wall time
 * and, through /usr/bin/time when present, the CPU time (user + system) it
 * used. On a busy host the wall time mostly measures waiting for a core;
 * the CPU time is what the command itself costs (ms).
 */
export function shell(cmd: string): { wall: number; cpu: number } {
  const timed = existsSync(TIME);
  const t = process.hrtime.bigint();
  const r = spawnSync('/bin/sh', ['-c', timed ? `${TIME} -f '%U %S' ${cmd} >/dev/null` : `${cmd} >/dev/null`], { cwd: REPO, encoding: 'utf8' });
  const wall = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} exited ${r.status}: ${r.stderr}`);
  const [u, sys] = (r.stderr.trim().split('\n').pop() ?? '').split(' ').map(Number);
  return { wall, cpu: timed && u !== undefined && sys !== undefined ? (u + sys) * 1000 : NaN };
}

/** The built dist/ must be what bin/k8s-ha.js runs, or the figures would be of tsx. */
export function ensureBuilt(): void {
  const stamp = join(REPO, 'dist/.built');
  const fresh = existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(join(REPO, 'src/cli/main.ts')).mtimeMs;
  if (!fresh || process.env.K8S_HA_BENCH_BUILD === '1') {
    const r = spawnSync(process.execPath, [join(REPO, 'scripts/build.mjs')], { cwd: REPO, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('npm run build failed');
  }
}

const quiet = (): CliIO => ({ stdout: () => undefined, stderr: () => undefined, env: process.env, cwd: REPO, isTTY: false });

/**
 * Start-up, as the user meets it: `k8s-ha --version` and `k8s-ha validate`
 * of the seed file, each a whole process from the shell (node start,
 * module loading, the work, exit), beside `node -e 0` (this host's floor)
 * and the in-process time of the same commands once loaded. Target: well
 * under 200 ms from the package (issue 12).
 */
export async function benchStartup(): Promise<BenchResult[]> {
  ensureBuilt();
  const node = JSON.stringify(process.execPath);
  // tsx: what every command cost before dist/ was built into the package (and still costs from a clone not built).
  const cmds = { floor: `${node} -e 0`, version: `${node} ${BIN} --version`, validate: `${node} ${BIN} validate ${SEED}`, tsx: `${node} --import tsx ${join(REPO, 'src/cli/main.ts')} validate ${SEED}` };
  type Run = { wall: number; cpu: number };
  const runs: Record<keyof typeof cmds, Run[]> = { floor: [], version: [], validate: [], tsx: [] };
  for (let i = 0; i < RUNS; i++) for (const k of ['floor', 'version', 'validate'] as const) runs[k].push(shell(cmds[k]));
  for (let i = 0; i < 3; i++) runs.tsx.push(shell(cmds.tsx));
  const wall = (k: keyof typeof runs): number[] => runs[k].map((r) => r.wall);
  const cpu = (k: keyof typeof runs): number => ms(median(runs[k].map((r) => r.cpu)));
  // In-process: the compiled command module, loaded once, then run.
  const tLoad = process.hrtime.bigint();
  const { main } = (await import(join(REPO, 'dist/cli/main.js'))) as { main: (argv: string[], io: CliIO) => Promise<number> };
  const loadMs = Number(process.hrtime.bigint() - tLoad) / 1e6;
  const inproc = async (argv: string[]): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = process.hrtime.bigint();
      if ((await main(argv, quiet())) !== 0) throw new Error(`${argv.join(' ')} failed`);
      out.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    return out;
  };
  const vIn = await inproc(['--version']);
  const valIn = await inproc(['validate', SEED]);
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  const note = (k: keyof typeof runs): string =>
    `wall median of ${RUNS} (min ${ms(Math.min(...wall(k)))}, max ${ms(Math.max(...wall(k)))}); CPU time (user+sys) median ${cpu(k)} ms; load average ${load} on this 2-core host`;
  return [
    { name: '`node -e 0` from the shell (this host\'s floor for any Node.js command)', value: ms(median(wall('floor'))), unit: 'ms', note: note('floor') },
    { name: '`k8s-ha --version` from the shell (built dist/)', value: ms(median(wall('version'))), unit: 'ms', target: 200, note: note('version') },
    { name: '`k8s-ha validate examples/seed.yaml` from the shell (built dist/)', value: ms(median(wall('validate'))), unit: 'ms', target: 200, note: note('validate') },
    { name: 'for comparison: `validate` from the TypeScript sources through tsx (the package before this change; a clone not built)', value: ms(median(wall('tsx'))), unit: 'ms', note: `median of 3; CPU time median ${cpu('tsx')} ms` },
    { name: 'CPU time of `k8s-ha --version` (user+sys, whole process)', value: cpu('version'), unit: 'ms' },
    { name: 'CPU time of `k8s-ha validate examples/seed.yaml` (user+sys, whole process)', value: cpu('validate'), unit: 'ms' },
    { name: 'in-process: loading the command module (dist/cli/main.js)', value: ms(loadMs), unit: 'ms' },
    { name: 'in-process: `--version` once loaded', value: ms(median(vIn)), unit: 'ms', note: `median of ${RUNS}` },
    { name: 'in-process: `validate examples/seed.yaml` once loaded (first run loads the spec modules)', value: ms(median(valIn)), unit: 'ms', note: `median of ${RUNS}; first ${ms(valIn[0]!)}` },
  ];
}
