import type { Host } from './host.js';

/**
 * Work on at most `limit` items at once (the engine's `--concurrency`), in
 * order of the input. Never rejects: every item's outcome comes back, in
 * input order, so failures on several hosts can be reported together. Once
 * `signal` aborts, items not yet started are not started (they are rejected
 * with the abort reason); items already running finish.
 */
export async function runBounded<T, R>(
  items: Iterable<T>,
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
  opts: { signal?: AbortSignal } = {},
): Promise<PromiseSettledResult<R>[]> {
  const list = [...items];
  const results: PromiseSettledResult<R>[] = new Array(list.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= list.length) return;
      if (opts.signal?.aborted) {
        results[i] = { status: 'rejected', reason: opts.signal.reason };
        continue;
      }
      try {
        results[i] = { status: 'fulfilled', value: await fn(list[i] as T, i) };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
    }
  };
  const workers = Math.max(1, Math.min(Math.floor(limit) || 1, list.length));
  await Promise.all(Array.from({ length: workers }, worker));
  return results;
}

/**
 * Connections to a known set of hosts: each is opened on first use and then
 * reused for the whole run; `close()` closes every one that was opened. A
 * failed connection is not kept, so a later `get` tries again.
 */
export class HostPool<T extends { name: string }> {
  readonly #targets = new Map<string, T>();
  readonly #open = new Map<string, Promise<Host>>();

  constructor(
    targets: Iterable<T>,
    private readonly connect: (target: T) => Promise<Host>,
  ) {
    for (const t of targets) this.#targets.set(t.name, t);
  }

  get(name: string): Promise<Host> {
    const existing = this.#open.get(name);
    if (existing) return existing;
    const target = this.#targets.get(name);
    if (!target) return Promise.reject(new Error(`no host named ${name}; known hosts: ${[...this.#targets.keys()].join(', ') || 'none'}`));
    const p = this.connect(target);
    this.#open.set(name, p);
    p.catch(() => {
      if (this.#open.get(name) === p) this.#open.delete(name);
    });
    return p;
  }

  /** Names of the hosts connected or connecting. */
  get opened(): string[] {
    return [...this.#open.keys()];
  }

  /** Close every opened host; one failing to close does not keep the others open. */
  async close(): Promise<void> {
    const open = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(open.map((p) => p.then((h) => h.close(), () => undefined).catch(() => undefined)));
  }
}

/**
 * A counting semaphore whose limit may be lowered while in use (an SSH
 * server that allows fewer sessions than asked for).
 */
export class Semaphore {
  active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(public limit: number) {}

  acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.#waiting.push(() => {
        this.active++;
        resolve();
      }),
    );
  }

  release(): void {
    this.active--;
    while (this.active < this.limit && this.#waiting.length) this.#waiting.shift()?.();
  }
}
