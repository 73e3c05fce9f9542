import { existsSync } from 'node:fs';
import { LAB_K3S } from '../lab/components.js';
import { labDown, openLab } from '../lab/index.js';
import { labSkipReason, testLabLock } from '../lab/testing.js';

/**
 * How every lab benchmark runs: refused (with the reason) where the lab
 * cannot run, on a lab of its own name, under the test labs' lock so it never
 * overlaps a lab test, a leftover lab of that name removed first, and the
 * lab always taken down afterwards, also when the benchmark fails.
 */
export async function onBenchLab<T>(name: string, opts: { labK3s?: boolean }, fn: () => Promise<T>): Promise<T> {
  const why = await labSkipReason();
  if (why) throw new Error(`the lab cannot run here: ${why}`);
  if (opts.labK3s && !existsSync(LAB_K3S)) throw new Error(`${LAB_K3S} is missing: build it with scripts/build-labk3s.sh`);
  const lock = await testLabLock();
  try {
    if (await openLab(name)) await labDown(name);
    return await fn();
  } finally {
    await labDown(name).catch(() => false);
    await lock.release();
  }
}
