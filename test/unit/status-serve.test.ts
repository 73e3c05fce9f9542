import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { statusToJSON, type StatusSnapshot } from '../../src/status/model.js';
import type { LiveParts } from '../../src/status/page/render.js';
import { isLoopback, parseListen, StatusServer, type ServeOptions } from '../../src/status/serve.js';
import { healthySnapshot, serverDown } from '../support/status-snapshots.js';

async function start(t: TestContext, o: Partial<ServeOptions> & Pick<ServeOptions, 'collect'>): Promise<StatusServer> {
  const s = await StatusServer.start({ host: '127.0.0.1', port: 0, refreshMs: 50, timeoutMs: 1000, ...o });
  t.after(() => s.close());
  return s;
}

function get(url: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<{ code: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: o.method ?? 'GET', headers: o.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ code: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject).end();
  });
}

/** An event-stream reader: the `status` events as they come, and a way to cut the connection. */
function stream(url: string): Promise<{ code: number; events: LiveParts[]; next: (ok: (p: LiveParts) => boolean, ms?: number) => Promise<LiveParts>; cut: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}events`, (res) => {
      const events: LiveParts[] = [];
      let buf = '';
      res.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (block.startsWith('event: status\n')) events.push(JSON.parse(block.slice(block.indexOf('data: ') + 6)) as LiveParts);
        }
      });
      res.on('error', () => undefined);
      const next = async (ok: (p: LiveParts) => boolean, ms = 5000) => {
        const deadline = Date.now() + ms;
        for (;;) {
          const hit = events.find(ok);
          if (hit) return hit;
          if (Date.now() > deadline) throw new Error(`no such event within ${ms} ms; last: ${JSON.stringify(events.at(-1)?.summary)}`);
          await sleep(20);
        }
      };
      resolve({ code: res.statusCode ?? 0, events, next, cut: () => req.destroy() });
    });
    req.on('error', reject).end();
  });
}

test('addresses: loopback names and addresses are told apart from others; --serve values are checked', () => {
  for (const a of ['127.0.0.1', '127.8.0.1', '::1', '[::1]', 'localhost']) assert.ok(isLoopback(a), a);
  for (const a of ['0.0.0.0', '::', '10.0.0.5', 'example.org']) assert.ok(!isLoopback(a), a);
  assert.deepEqual(parseListen('127.0.0.1:8440'), { host: '127.0.0.1', port: 8440 });
  assert.deepEqual(parseListen('[::1]:9000'), { host: '::1', port: 9000 });
  assert.deepEqual(parseListen('9000'), { host: '127.0.0.1', port: 9000 });
  assert.throws(() => parseListen('myhost:80'), /--serve takes ADDRESS:PORT \(e\.g\. 127\.0\.0\.1:8440, \[::1\]:8440\) or a port, not "myhost:80"/);
  assert.throws(() => parseListen('127.0.0.1:99999'), /not "127\.0\.0\.1:99999"/);
});

test('a non-loopback address is refused without allowRemote, naming the flag and the risk; with it, it binds', async (t) => {
  let collected = 0;
  const collect = async () => (collected++, healthySnapshot());
  await assert.rejects(StatusServer.start({ host: '0.0.0.0', port: 0, collect }), /not a loopback address; the page shows the cluster's topology .* Add --allow-remote/);
  assert.equal(collected, 0, 'nothing collected before the refusal');
  const s = await start(t, { host: '0.0.0.0', allowRemote: true, collect });
  assert.match(s.url, /^http:\/\/0\.0\.0\.0:\d+\/$/);
});

test('the page, its assets and /status.json (the same JSON as status --json); read-only; loopback names only', async (t) => {
  const snap = healthySnapshot();
  const s = await start(t, { collect: async () => structuredClone(snap) });
  while (s.rounds < 1) await sleep(10);
  const page = await get(s.url);
  assert.equal(page.code, 200);
  assert.match(page.headers['content-type'] ?? '', /^text\/html/);
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
  assert.match(page.body, /<svg class="topo topo-w"/);
  assert.equal((await get(`${s.url}assets/page.js`)).code, 200);
  assert.match((await get(`${s.url}assets/page.css`)).body, /--ok:/);
  const json = await get(`${s.url}status.json`);
  assert.deepEqual(JSON.parse(json.body), JSON.parse(JSON.stringify(statusToJSON(snap))));
  assert.equal((await get(s.url, { method: 'POST' })).code, 405);
  assert.equal((await get(s.url, { method: 'DELETE' })).headers.allow, 'GET, HEAD');
  assert.equal((await get(`${s.url}nope`)).code, 404);
  // A page on loopback refuses other Host names (DNS rebinding).
  const rebind = await get(s.url, { headers: { host: 'attacker.example:80' } });
  assert.equal(rebind.code, 421);
});

test('the event stream: the current state at once, then each change with a timeline entry', async (t) => {
  let snap = healthySnapshot();
  const s = await start(t, { collect: async () => structuredClone(snap) });
  const es = await stream(s.url);
  t.after(es.cut);
  await es.next((p) => p.health === 'ok');
  snap = serverDown(healthySnapshot('2026-12-01T12:03:42.000Z'));
  const down = await es.next((p) => p.health === 'bad');
  assert.match(down.summary, /degraded: 3 problems/);
  assert.match(down.main, /<g class="el h-bad" id="w-server-server2"/);
  assert.match(down.main, /server server2 down: host unreachable/);
  snap = healthySnapshot('2026-12-01T12:03:46.000Z');
  const back = await es.next((p) => p.health === 'ok' && p.main.includes('server server2 healthy again'));
  assert.match(back.title, /✓ home status/);
});

test('a client that disconnects mid-stream is dropped; the server goes on serving the others', async (t) => {
  const s = await start(t, { collect: async () => healthySnapshot(), pingMs: 30 });
  const a = await stream(s.url);
  const b = await stream(s.url);
  t.after(b.cut);
  await a.next(() => true);
  while (s.clients < 2) await sleep(10);
  a.cut();
  for (let i = 0; s.clients !== 1 && i < 200; i++) await sleep(10);
  assert.equal(s.clients, 1);
  const n = b.events.length;
  await b.next(() => b.events.length > n + 2);
  assert.equal((await get(s.url)).code, 200);
});

test('open pages are bounded: one more stream than maxClients is refused with 503 and a reason; a closed one frees a place', async (t) => {
  const s = await start(t, { collect: async () => healthySnapshot(), maxClients: 3 });
  const open = await Promise.all([stream(s.url), stream(s.url), stream(s.url)]);
  t.after(() => open.forEach((o) => o.cut()));
  const extra = await get(`${s.url}events`);
  assert.equal(extra.code, 503);
  assert.match(extra.body, /too many open status pages \(3\); close one and reload/);
  open[0]!.cut();
  for (let i = 0; s.clients !== 2 && i < 200; i++) await sleep(10);
  const again = await stream(s.url);
  t.after(again.cut);
  assert.equal(again.code, 200);
  assert.equal(s.clients, 3);
});

test('a hanging collector: the page turns stale within the timeout and says why; no second collection piles up; it recovers', async (t) => {
  let calls = 0;
  let hang = false;
  let release: (s: StatusSnapshot) => void = () => undefined;
  const s = await start(t, {
    timeoutMs: 200,
    collect: () => {
      calls++;
      if (!hang) return Promise.resolve(healthySnapshot());
      return new Promise<StatusSnapshot>((r) => (release = r));
    },
  });
  const es = await stream(s.url);
  t.after(es.cut);
  await es.next((p) => p.health === 'ok');
  hang = true;
  const t0 = Date.now();
  const stale = await es.next((p) => p.health === 'stale');
  assert.ok(Date.now() - t0 < 1500, `stale after ${Date.now() - t0} ms`);
  assert.match(stale.banner, /Stale since .*The collector has not finished within 0\.2 s/);
  assert.match(stale.summary, /\(stale\)$/);
  assert.match(stale.main, /id="w-server-server1"/, 'the last picture stays');
  const before = calls;
  await sleep(1500);
  // Seven timeout windows: the hung round is waited for, and given up only every third window, two at most.
  assert.ok(calls - before <= 2, `${calls - before} more collections started while it hung`);
  assert.equal(s.collector.state, 'stale');
  hang = false;
  release(healthySnapshot());
  const back = await es.next((p) => p.health === 'ok' && p.main.includes('the collector answers again'), 3000);
  assert.match(back.main, /data stale: The collector has not finished within 0\.2 s/);
});

test('a failing collector: stale with its error; the page keeps the last picture', async (t) => {
  let fail = false;
  const s = await start(t, { collect: async () => (fail ? Promise.reject(new Error('server1: connection refused')) : healthySnapshot()) });
  const es = await stream(s.url);
  t.after(es.cut);
  await es.next((p) => p.health === 'ok');
  fail = true;
  const stale = await es.next((p) => p.health === 'stale');
  assert.match(stale.banner, /The collector failed: server1: connection refused/);
});
