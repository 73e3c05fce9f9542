// The live status page in a real browser (Debian's Chromium, driven by
// playwright-core) against a lab with two load balancers and a virtual IP,
// MariaDB and the lab's k3s: every host healthy; a server frozen -> shown
// down within a bound and recorded in the timeline; thawed -> healthy; the
// primary load balancer stopped -> the VIP holder changes on the page. A
// screenshot of each state is saved to test-artifacts/status-page/.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { labSkipReason, withLab, skipOrFail } from '../../lab/testing.js';
import { applyCluster, boxHealth, browserSkipReason, clusterFile, launchChromium, REPO, serve, stopNginx, until, type Served } from '../../bench/status-page-lab.js';

const ARTIFACTS = join(REPO, 'test-artifacts/status-page');
const labSkip = await labSkipReason();
const skip = labSkip ? `no lab: ${labSkip}` : skipOrFail(browserSkipReason()) || null;

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function scenario(t: TestContext): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await withLab({ lb2: true, servers: 2, agents: 1, skip: (r) => t.skip(r) }, async (lab) => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-status-page-lab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = clusterFile(lab, dir);
    await applyCluster(lab, file);
    let served: Served | undefined;
    let browser: Browser | undefined;
    try {
      served = await serve(lab, file, dir);
      browser = await launchChromium();
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      // Air-gapped: every request the page makes goes to k8s-ha itself.
      const origins = new Set<string>();
      page.on('request', (r) => void origins.add(new URL(r.url()).origin));
      await page.goto(served.server.url);

      await t.test('the page shows every host healthy, each box focusable with its reason', async () => {
        await until(page, 180_000, { health: 'ok' });
        const boxes = await page.$$eval('.topo-w .el', (els) => els.map((e) => `${e.getAttribute('data-id')}:${[...e.classList].find((c) => c.startsWith('h-'))}`));
        assert.deepEqual(boxes.sort(), ['agent:agent1:h-ok', 'clients:h-ok', 'datastore:infra:h-ok', 'lb:infra:h-ok', 'lb:lb2:h-ok', 'server:server1:h-ok', 'server:server2:h-ok', 'vip:h-ok']);
        assert.match(await page.textContent('#w-vip') ?? '', /on infra/);
        assert.match(await page.textContent('#summary') ?? '', /healthy/);
        // Keyboard: focus a box, Enter shows its details in the panel.
        await page.focus('#w-server-server2');
        await page.keyboard.press('Enter');
        assert.match(await page.textContent('#detail') ?? '', /server2.*healthy.*node Ready/s);
        await page.keyboard.press('Escape');
        assert.equal(await page.textContent('#detail'), '');
        await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
        await shot(page, '1-healthy');
        const phone = await browser!.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
        await phone.goto(served!.server.url);
        await until(phone, 30_000, { health: 'ok' });
        assert.ok(await phone.isVisible('.topo-n') && !(await phone.isVisible('.topo-w')), 'the narrow picture on a phone');
        await phone.tap('#n-lb-lb2');
        assert.match(await phone.textContent('#detail') ?? '', /lb2.*standby|lb2.*healthy/s);
        await shot(phone, '1-healthy-phone');
        await phone.close();
      });

      await t.test('a frozen server is shown down within 15 s and the timeline records it', async () => {
        const t0 = Date.now();
        await lab.freeze('server2');
        try {
          const seen = await until(page, 15_000, { box: 'server:server2', is: 'bad' });
          t.diagnostic(`server2 frozen: shown down after ${seen - t0} ms`);
          await until(page, 5_000, { timeline: 'server server2 down' });
          assert.equal(await boxHealth(page, 'server:server1'), 'ok');
          assert.match(await page.textContent('#problems') ?? '', /server2/);
          // Its SSH answers no more either, within the page's 2 s bound per host.
          await until(page, 10_000, { text: 'host server2', in: 'problems' });
          await shot(page, '2-server2-frozen');
        } finally {
          await lab.thaw('server2');
        }
      });

      await t.test('thawed, the server is healthy again and the timeline says so', async () => {
        await until(page, 60_000, { box: 'server:server2', is: 'ok' }, { health: 'ok' });
        await until(page, 5_000, { timeline: 'server server2 healthy again' });
        await shot(page, '3-server2-thawed');
      });

      await t.test('the primary load balancer stopped: the VIP holder changes on the page, in the picture and the timeline', async () => {
        await stopNginx(lab, 'infra');
        try {
          await until(page, 30_000, { text: 'on lb2', in: 'w-vip' });
          await until(page, 10_000, { box: 'lb:infra', is: 'bad' });
          await until(page, 5_000, { timeline: 'moved infra → lb2' });
          assert.match(await page.textContent('#w-lb-lb2') ?? '', /VIP/);
          await shot(page, '4-primary-lb-stopped');
        } finally {
          await lab.exec('infra', ['systemctl', 'start', 'nginx']);
        }
        await until(page, 30_000, { box: 'lb:infra', is: 'ok' });
      });

      assert.deepEqual(errors, [], 'no script error in the page');
      assert.deepEqual([...origins], [new URL(served.server.url).origin]);
    } finally {
      await browser?.close();
      if (served) {
        const r = await served.stop();
        assert.equal(r.code, 0, r.stderr);
      }
    }
  });
}

test('the live status page in a browser, on the lab', { skip: skip ?? false }, async (t) => {
  await scenario(t);
});
