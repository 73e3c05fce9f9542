import { ensureImage, findImage } from '../lab/image.js';
import { labSkipReason } from '../lab/testing.js';
import { labUp } from '../lab/index.js';
import { onBenchLab } from './lab.js';
import type { BenchResult } from './result.js';

const RUNS = 3;
const NAME = 'bench';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

const round = (s: number): number => Math.round(s * 100) / 100;

/**
 * `lab up` of the seed topology with a cached image, until all six machines
 * have let k8s-ha's SSH transport log in (target < 10 s); the median of three.
 * Traffic goes only to the lab's own machines.
 */
export async function benchLabUp(): Promise<BenchResult[]> {
  const why = await labSkipReason();
  if (why) throw new Error(`the lab cannot run here: ${why}`);
  const out: BenchResult[] = [];
  if (!(await findImage())) {
    // Not part of the figure, but worth knowing on a fresh machine.
    const t = Date.now();
    const img = await ensureImage();
    out.push({ name: 'lab image build (debootstrap, once)', value: round((Date.now() - t) / 1000), unit: 's', note: img.key });
  }
  return onBenchLab(NAME, {}, async () => {
    const ups: number[] = [];
    const downs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = Date.now();
      const lab = await labUp({ name: NAME });
      ups.push((Date.now() - t0) / 1000);
      // Proof beyond labUp's own readiness wait: a command on every machine.
      await Promise.all(
        lab.machines.map(async (m) => {
          const h = await lab.connect(m.name);
          await h.close();
        }),
      );
      const t1 = Date.now();
      await lab.down();
      downs.push((Date.now() - t1) / 1000);
    }
    out.push({ name: 'lab up, seed topology (6 machines), cached image, to all answering on SSH', value: round(median(ups)), unit: 's', target: 10, note: `median of ${RUNS}: ${ups.map((u) => u.toFixed(2)).join(', ')}` });
    out.push({ name: 'lab down, seed topology', value: round(median(downs)), unit: 's', note: `median of ${RUNS}` });
    return out;
  });
}
