/**
 * For tests that need machines:
 *
 *   test('...', { skip: await labSkipReason() ?? false }, async () => {
 *     await withLab({ servers: 1, agents: 0 }, async (lab) => { ... });
 *   });
 *
 * Labs made here never overlap: each waits for a lock held while its
 * lab is up, even across test files and processes.
 */
import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { labBlocker } from './requirements.js';
import { DEFAULT_TEST_LAB_WAIT_MS, labDown, labUp, openLab, type Lab, type LabOptions } from './index.js';
import { acquireLock, stateRoot, type Lock } from './state.js';

/**
 * CI (`CI=true`, as root) is where the lab must be proven: there a lab test
 * that cannot run is a failure, not a skip, or a broken lab would still give
 * a green run. Only the real-k3s scenario may skip (real k3s not supplied).
 */
export function labTestsMustRun(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.CI === 'true' && process.getuid?.() === 0;
}

/** In CI: throws (the test file fails, naming why); elsewhere: the reason, as a test's `skip`. */
export function skipOrFail(reason: string | null | undefined, env: NodeJS.ProcessEnv = process.env): string | false {
  if (!reason) return false;
  if (labTestsMustRun(env)) throw new Error(`CI=true as root: this lab test must run, but ${reason}`);
  return reason;
}

/** Why lab tests cannot run on this host (shown as the skip reason), or null; in CI a reason throws instead (skipOrFail). */
export async function labSkipReason(env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  const why = env.K8S_HA_NO_LAB === '1' ? 'K8S_HA_NO_LAB=1' : await labBlocker(env);
  return skipOrFail(why, env) || null;
}

/** The lab name tests use unless they say otherwise. */
export const TEST_LAB = 'test';

/**
 * The lock every test lab is made under (waited for, up to 30 min): hold it
 * from before labUp until after down when not using withLab.
 */
export async function testLabLock(env: NodeJS.ProcessEnv = process.env): Promise<Lock> {
  // Re-entrant within a process: a test may hold it around withLab (to
  // compare the host before and after) while withLab takes it too.
  if (!held) {
    const pending = acquireLock(join(stateRoot(env), '.tests.lock'), 'a test lab', DEFAULT_TEST_LAB_WAIT_MS);
    held = { lock: pending, count: 0 };
    pending.catch(() => {
      held = null;
    });
  }
  const h = held;
  h.count++;
  await h.lock;
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      if (--h.count > 0) return;
      held = null;
      await (await h.lock).release();
      // The lab folder's parent goes too when nothing else is in it.
      await rmdir(stateRoot(env)).catch(() => undefined);
    },
  };
}

let held: { lock: Promise<Lock>; count: number } | null = null;

export interface WithLabOptions extends LabOptions {
  /** Called with the skip reason when the host cannot run labs (e.g. `t.skip`). Default: print it to stderr. */
  skip?: (reason: string) => void;
}

/**
 * Brings a lab up, runs fn, and always removes the lab afterwards, also
 * when fn throws. When the host cannot run labs it skips (with the reason)
 * instead of failing.
 */
export async function withLab<T>(opts: WithLabOptions, fn: (lab: Lab) => Promise<T>): Promise<T | undefined> {
  const env = opts.env ?? process.env;
  const why = await labSkipReason(env);
  if (why) {
    if (opts.skip) opts.skip(`no lab: ${why}`);
    else process.stderr.write(`# SKIP lab: ${why}\n`);
    return undefined;
  }
  // K8S_HA_LAB_NAME (with K8S_HA_LAB_STATE for its own lock): run a lab test on one's own lab beside the shared one.
  const name = opts.name ?? env.K8S_HA_LAB_NAME ?? TEST_LAB;
  const lock = await testLabLock(env);
  try {
    // Left by a test run that crashed: nothing else can hold it while we hold the lock.
    if (await openLab(name, env)) await labDown(name, env);
    const lab = await labUp({ ...opts, name, env });
    try {
      return await fn(lab);
    } finally {
      await lab.down();
    }
  } finally {
    await lock.release();
  }
}

/** Polls `fn` every `everyMs` (a second) until it returns a value, or fails after `timeoutMs` with the last error seen. */
export async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | null>, everyMs = 1000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s${last ? `; last error: ${last}` : ''}`);
    await sleep(everyMs);
  }
}
