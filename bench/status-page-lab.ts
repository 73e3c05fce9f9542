import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import type { Browser, Page } from 'playwright-core';
import type { StatusHooks } from '../src/cli/commands/status.js';
import { main } from '../src/cli/main.js';
import type { CliIO } from '../src/cli/io.js';
import { ClusterRun } from '../src/cluster/open.js';
import type { StatusServer } from '../src/status/serve.js';
import type { Lab } from '../lab/index.js';

/**
 * Shared by test/lab/status-page.test.ts and bench/status-page.ts: the lab's
 * cluster applied (nginx on two LBs with a virtual IP, MariaDB, the lab's
 * k3s), `k8s-ha status --serve` run in-process on a free loopback port, and
 * the system's Chromium (Debian's `chromium`) driven by playwright-core,
 * which never downloads a browser of its own. (playwright-core rather than
 * puppeteer-core: current puppeteer-core needs Node.js 22.12, k8s-ha runs on
 * 20; playwright-core supports 20 and has no dependencies.)
 */
export const REPO = resolve(import.meta.dirname, '..');
export const LAB_K3S = join(REPO, 'labk3s/bin/k3s');
export const CHROMIUM = process.env.K8S_HA_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser test cannot run here, or null. */
export function browserSkipReason(): string | null {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium`;
  if (!existsSync(LAB_K3S)) return `${LAB_K3S} is missing: build it with scripts/build-labk3s.sh`;
  return null;
}

/** The lab's cluster file with the lab's k3s, without MetalLB (test/lab/metallb.test.ts covers it). */
export function clusterFile(lab: Lab, dir: string): string {
  const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, Record<string, unknown>>;
  delete doc.metallb;
  doc.k3s = { ...doc.k3s, install: { source: 'local', path: LAB_K3S } };
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

export async function applyCluster(lab: Lab, file: string): Promise<void> {
  const run = await ClusterRun.open(file, { env: process.env, connect: (h) => lab.connect(h.name) });
  try {
    await run.apply();
  } finally {
    await run.close();
  }
}

export interface Served {
  server: StatusServer;
  stop: () => Promise<{ code: number; stdout: string; stderr: string }>;
}

/** `k8s-ha status -f FILE --serve 127.0.0.1:0 --watch 1`, in-process, over the lab's SSH. */
export async function serve(lab: Lab, file: string, dir: string, extra: StatusHooks['serve'] = {}): Promise<Served> {
  const ac = new AbortController();
  let stdout = '';
  let stderr = '';
  const io: CliIO = { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), env: process.env, cwd: dir, isTTY: false };
  let listening: (s: StatusServer) => void = () => undefined;
  const up = new Promise<StatusServer>((r) => (listening = r));
  const hooks: StatusHooks = { signal: ac.signal, open: { connect: (h) => lab.connect(h.name, 5_000) }, serve: { ...extra, listening } };
  const done = main(['status', '-f', file, '--serve', '127.0.0.1:0', '--watch', '1'], io, hooks);
  const server = await Promise.race([up, done.then((code) => Promise.reject(new Error(`status --serve exited ${code}: ${stderr}`)))]);
  return {
    server,
    stop: async () => {
      ac.abort();
      const code = await done;
      return { code, stdout, stderr };
    },
  };
}

/**
 * `systemctl stop nginx` on an LB machine; k8s-ha-lbcheck may be reloading
 * nginx just then (a server it had marked down came back), and systemd
 * cancels the stop ("Job for nginx.service canceled"): tried three times.
 * Returns when the stop was issued.
 */
export async function stopNginx(lab: Lab, machine: string): Promise<number> {
  for (let i = 0; ; i++) {
    const t = Date.now();
    const r = await lab.exec(machine, ['systemctl', 'stop', 'nginx'], { allowFailure: true });
    if (r.code === 0) return t;
    if (i === 2) throw new Error(`systemctl stop nginx on ${machine}: ${r.stderr.trim()}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  // Root (the lab tests run as root) cannot use Chromium's sandbox.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}

/** The health class of a box in the wide picture, as the browser shows it now. */
export async function boxHealth(page: Page, id: string): Promise<string | null> {
  return page.evaluate((domId) => {
    const el = document.getElementById(domId);
    return el ? ([...el.classList].find((c) => c.startsWith('h-'))?.slice(2) ?? null) : null;
  }, `w-${id.replace(/[^A-Za-z0-9_-]/g, '-')}`);
}

/**
 * What the page shows, checked in the page on every animation frame (a
 * function, not a string: the page's CSP forbids eval, and must).
 */
export type Expect =
  | { health: string }
  | { box: string; is: string }
  | { timeline: string }
  | { text: string; in: string };

/** Waits until every expectation holds; the time they did (ms since the epoch). */
export async function until(page: Page, timeoutMs: number, ...all: Expect[]): Promise<number> {
  await page.waitForFunction(
    // Runs in the page (serialized by playwright): self-contained, and no named
    // inner function (tsx would wrap it in a helper the page does not have).
    (all: Expect[]) =>
      all.every((e) => {
        if ('health' in e) return document.body.dataset.health === e.health;
        if ('box' in e) return document.getElementById(`w-${e.box.replace(/[^A-Za-z0-9_-]/g, '-')}`)?.classList.contains(`h-${e.is}`) ?? false;
        if ('timeline' in e) return [...document.querySelectorAll('#timeline li')].some((li) => li.textContent?.includes(e.timeline));
        return document.getElementById(e.in)?.textContent?.includes(e.text) ?? false;
      }),
    all,
    { timeout: timeoutMs, polling: 'raf' },
  );
  return Date.now();
}
