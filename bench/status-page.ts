import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { labDown, labUp, openLab, type Lab } from '../lab/index.js';
import { labSkipReason, testLabLock } from '../lab/testing.js';
import { LBCHECK_STATE_PATH } from '../src/render/lbcheck.js';
import type { BenchResult } from './result.js';
import { applyCluster, browserSkipReason, clusterFile, launchChromium, REPO, serve, stopNginx, until } from './status-page-lab.js';

const NAME = 'bench';
const FAULTS = 3;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;
const s2 = (ms: number): number => Math.round(ms / 10) / 100;

/** Polls `fn` every 100 ms; the time it first held (ms since the epoch). */
async function when(what: string, timeoutMs: number, fn: () => Promise<boolean>): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn().catch(() => false)) return Date.now();
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/**
 * The live status page on the lab (two nginx LBs with a VIP, MariaDB, the
 * lab's k3s), in Debian's Chromium:
 * - the collector's cost per refresh: wall time and this process's CPU per
 *   round while healthy, and a whole `k8s-ha status --json` from the shell;
 * - a frozen server: time from the freeze to the page showing it down, beside
 *   the time nginx's own health check (k8s-ha-lbcheck) marked it down; the
 *   goal is the page within 2 s of that;
 * - the primary LB's nginx stopped: the VIP on lb2 (ip addr) and on the page.
 */
export async function benchStatusPage(): Promise<BenchResult[]> {
  const why = (await labSkipReason()) ?? browserSkipReason();
  if (why) throw new Error(`cannot run here: ${why}`);
  const out: BenchResult[] = [];
  // Each figure is printed as it is measured, so a later failure keeps it.
  const push = (r: BenchResult) => (out.push(r), process.stderr.write(`  (measured) ${r.name}: ${r.value} ${r.unit}${r.note ? ` — ${r.note}` : ''}\n`));
  const lock = await testLabLock();
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-bench-status-page-'));
  let lab: Lab | undefined;
  try {
    if (await openLab(NAME)) await labDown(NAME);
    lab = await labUp({ name: NAME, lb2: true, servers: 2, agents: 1 });
    const file = clusterFile(lab, dir);
    await applyCluster(lab, file);

    const rounds: { ms: number; healthy: boolean }[] = [];
    const served = await serve(lab, file, dir, { onRound: (r) => rounds.push({ ms: r.ms, healthy: r.model?.healthy === true && r.collector.state === 'fresh' }) });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(served.server.url);
      await until(page, 180_000, { health: 'ok' });

      // Cost per refresh, healthy: 20 s of rounds at --watch 1.
      const n0 = rounds.length;
      const cpu0 = process.cpuUsage();
      await sleep(20_000);
      const cpu = process.cpuUsage(cpu0);
      const healthy = rounds.slice(n0).filter((r) => r.healthy).map((r) => r.ms);
      push({ name: 'status page: one collection (refresh), healthy lab, wall time', value: median(healthy), unit: 'ms', note: `median of ${healthy.length} rounds; p90 ${pct(healthy, 0.9)} ms` });
      push({ name: 'status page: k8s-ha CPU per refresh (collector, render, SSE, this process only)', value: Math.round((cpu.user + cpu.system) / 1000 / Math.max(1, rounds.length - n0)), unit: 'ms', note: `${rounds.length - n0} rounds in 20 s, includes the benchmark's own browser driving` });

      // A whole `status --json` from the shell: node start, SSH handshakes, one collection.
      const whole: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t = Date.now();
        const r = spawnSync(process.execPath, [join(REPO, 'bin/k8s-ha.js'), 'status', '-f', file, '--json'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
        whole.push(Date.now() - t);
        if (r.status !== 0) throw new Error(`status --json exited ${r.status}: ${r.stderr}${r.stdout.slice(0, 400)}`);
      }
      push({ name: 'whole `k8s-ha status --json` from the shell (new process, new SSH connections)', value: median(whole), unit: 'ms', note: `median of 3: ${whole.join(', ')} ms` });

      // A frozen server, FAULTS times: the page vs nginx's own checker.
      const page2: number[] = [];
      const check: number[] = [];
      const beyond: number[] = [];
      for (let i = 0; i < FAULTS; i++) {
        const t0 = Date.now();
        await lab.freeze('server2');
        try {
          const [tPage, tCheck] = await Promise.all([
            until(page, 30_000, { box: 'server:server2', is: 'bad' }),
            when('k8s-ha-lbcheck marking server2 down', 30_000, async () => / down; # server2$/m.test((await lab!.exec('infra', ['cat', LBCHECK_STATE_PATH])).stdout)),
          ]);
          page2.push(tPage - t0);
          check.push(tCheck - t0);
          beyond.push(tPage - tCheck);
        } finally {
          await lab.thaw('server2');
        }
        await until(page, 120_000, { box: 'server:server2', is: 'ok' }, { health: 'ok' });
      }
      push({ name: 'server frozen: nginx health check (k8s-ha-lbcheck) marks it down', value: s2(median(check)), unit: 's', note: `median of ${FAULTS}: ${check.map(s2).join(', ')} s` });
      push({ name: 'server frozen: the page shows it down (from the freeze)', value: s2(median(page2)), unit: 's', note: `median of ${FAULTS}: ${page2.map(s2).join(', ')} s` });
      push({ name: 'server frozen: the page beyond the health check', value: s2(median(beyond)), unit: 's', target: 2, note: `median of ${FAULTS}: ${beyond.map(s2).join(', ')} s (negative: the page's own probe saw it first)` });

      // The primary LB stopped: VIP on lb2 (as the host has it) and on the page.
      const vip = lab.virtualIP!;
      const t0 = await stopNginx(lab, 'infra');
      try {
        const [tHost, tPage] = await Promise.all([
          when('the VIP on lb2', 30_000, async () => (await lab!.exec('lb2', ['ip', '-o', 'addr', 'show'])).stdout.includes(` ${vip}/`)),
          until(page, 30_000, { text: 'on lb2', in: 'w-vip' }),
        ]);
        push({ name: 'primary LB stopped: VIP on lb2 (keepalived)', value: s2(tHost - t0), unit: 's' });
        push({ name: 'primary LB stopped: the page shows lb2 holding the VIP', value: s2(tPage - t0), unit: 's', note: `${s2(tPage - tHost)} s after the host had it` });
      } finally {
        await lab.exec('infra', ['systemctl', 'start', 'nginx']);
      }
    } finally {
      await browser.close();
      await served.stop();
    }
    return out;
  } finally {
    await lab?.down().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    await lock.release();
  }
}
