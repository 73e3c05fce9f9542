import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Host } from '../../src/transport/host.js';
import { MemoryHost } from '../../src/transport/memory.js';
import { HostPool, runBounded } from '../../src/transport/pool.js';

test('runBounded never works on more items at once than the limit, and keeps input order in its results', async () => {
  let running = 0;
  let peak = 0;
  const results = await runBounded([50, 10, 30, 20, 5, 40], 2, async (ms) => {
    running++;
    peak = Math.max(peak, running);
    await sleep(ms);
    running--;
    return ms * 2;
  });
  assert.equal(peak, 2);
  assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : null)), [100, 20, 60, 40, 10, 80]);
});

test('runBounded reports every failure and still works on the other items', async () => {
  const results = await runBounded(['a', 'b', 'c'], 3, async (x) => {
    if (x !== 'b') throw new Error(`${x} failed`);
    return x;
  });
  assert.deepEqual(results.map((r) => r.status), ['rejected', 'fulfilled', 'rejected']);
});

test('runBounded starts nothing more once aborted, and lets running items finish', async () => {
  const ctl = new AbortController();
  const started: number[] = [];
  const results = await runBounded([1, 2, 3, 4], 1, async (x) => {
    started.push(x);
    if (x === 2) ctl.abort(new Error('interrupted'));
    await sleep(1);
    return x;
  }, { signal: ctl.signal });
  assert.deepEqual(started, [1, 2]);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'rejected']);
});

test('runBounded with no items returns at once', async () => {
  assert.deepEqual(await runBounded([], 4, async () => 1), []);
});

test('a host pool connects to each host once, on first use, and closes them all', async () => {
  const connects: string[] = [];
  const hosts = new Map<string, MemoryHost>();
  const pool = new HostPool([{ name: 'a' }, { name: 'b' }, { name: 'c' }], async (t): Promise<Host> => {
    connects.push(t.name);
    await sleep(5);
    const h = new MemoryHost({ name: t.name });
    hosts.set(t.name, h);
    return h;
  });
  const [a1, a2] = await Promise.all([pool.get('a'), pool.get('a')]);
  assert.equal(a1, a2);
  await pool.get('b');
  assert.deepEqual(connects, ['a', 'b']);
  assert.deepEqual(pool.opened, ['a', 'b']);
  await assert.rejects(pool.get('zz'), /no host named zz; known hosts: a, b, c/);
  await pool.close();
  assert.equal(hosts.get('a')?.closes, 1);
  assert.equal(hosts.get('b')?.closes, 1);
  assert.equal(hosts.has('c'), false);
});

test('a host pool forgets a failed connection, so the next use tries again', async () => {
  let attempts = 0;
  const pool = new HostPool([{ name: 'a' }], async (t): Promise<Host> => {
    if (++attempts === 1) throw new Error('refused');
    return new MemoryHost({ name: t.name });
  });
  await assert.rejects(pool.get('a'), /refused/);
  assert.equal((await pool.get('a')).name, 'a');
  assert.equal(attempts, 2);
  await pool.close();
});
