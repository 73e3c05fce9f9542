import type { Host } from '../transport/host.js';
import { gatherFacts, parseFacts } from '../transport/os.js';
import { runBounded } from '../transport/pool.js';
import { SecretSet, type Secret } from '../util/secret.js';
import { HostError, InterruptedError, MultiHostError, type Problem, causeText } from './errors.js';
import { type EventSink, noEvents } from './events.js';
import type { AnyPhase, Change, HostFacts, RunContext } from './phase.js';

export interface EngineOptions<C> {
  cluster: C;
  /** Every host in the cluster file (facts are gathered from all of them). */
  hosts: { name: string; address: string }[];
  /** Opens a host; called at most once per host per run. */
  connect(name: string): Promise<Host>;
  /** The pipeline, in order. */
  phases: AnyPhase<C>[];
  /** Every secret in play, so that plans and errors can mask them (a SecretSet is used as it is and grows during the run). */
  secrets?: SecretSet | Secret[];
  /** Hosts worked on at once. Default 5. */
  concurrency?: number;
  events?: EventSink;
  signal?: AbortSignal;
}

export interface PlanStep {
  phase: string;
  title: string;
  host: string;
  changes: Change[];
}

export interface Plan {
  steps: PlanStep[];
  /** Preflight problems found (errors stop an apply). */
  problems: Problem[];
  /** True when no host needs any change. */
  empty: boolean;
}

export interface ApplyResult {
  applied: PlanStep[];
  changed: number;
  ms: number;
}

/**
 * Runs the pipeline: observe -> diff -> (apply). Reading is free; only
 * `apply` calls a Change's apply, so `plan` shows exactly what `apply` does.
 */
export class Engine<C> {
  private readonly conns = new Map<string, Promise<Host>>();
  private readonly facts = new Map<string, HostFacts>();
  private readonly events: EventSink;
  private readonly concurrency: number;
  readonly ctx: RunContext<C>;

  constructor(private readonly opts: EngineOptions<C>) {
    this.events = opts.events ?? noEvents;
    this.concurrency = Math.max(1, opts.concurrency ?? 5);
    this.ctx = {
      cluster: opts.cluster,
      secrets: opts.secrets instanceof SecretSet ? opts.secrets : new SecretSet(opts.secrets ?? []),
      facts: this.facts,
      host: (name) => this.host(name),
      events: this.events,
      signal: opts.signal,
    };
  }

  /** The connected host; connects on first use and reuses the connection. */
  host(name: string): Promise<Host> {
    let p = this.conns.get(name);
    if (!p) {
      const h = this.opts.hosts.find((x) => x.name === name);
      if (!h) throw new Error(`no host named ${name} in the cluster file`);
      this.events({ type: 'connect', host: name, address: h.address });
      p = this.opts.connect(name);
      // A failed connection may be retried by a later call.
      p.catch(() => this.conns.delete(name));
      this.conns.set(name, p);
    }
    return p;
  }

  /** Connect to every host and read its OS, architecture and init system. */
  async gatherFacts(): Promise<void> {
    const errors: Error[] = [];
    await runBounded(this.opts.hosts, this.concurrency, async (h) => {
      if (this.facts.has(h.name)) return;
      try {
        const host = await this.host(h.name);
        const r = await host.exec(gatherFacts(), { sudo: false });
        const f = parseFacts(r.stdout);
        if (f.init !== 'systemd') throw new Error(`k8s-ha needs systemd as init (found ${f.init || 'unknown'})`);
        this.facts.set(h.name, f);
        this.events({ type: 'facts', host: h.name, os: `${f.os} ${f.osVersion}`, arch: f.arch });
      } catch (e) {
        errors.push(e instanceof HostError ? e : new HostError(h.name, 'gathering facts', e));
      }
    });
    if (errors.length) throw new MultiHostError(errors);
  }

  private async observePhase(phase: AnyPhase<C>): Promise<Map<string, unknown>> {
    const observed = new Map<string, unknown>();
    const errors: Error[] = [];
    const targets = phase.targets(this.ctx);
    await runBounded(targets, this.concurrency, async (name) => {
      try {
        observed.set(name, await phase.observe(this.ctx, await this.host(name)));
      } catch (e) {
        errors.push(new HostError(name, `${phase.title}: reading state`, e));
      }
    });
    if (errors.length) throw new MultiHostError(errors);
    return observed;
  }

  private diffPhase(phase: AnyPhase<C>, observed: Map<string, unknown>): PlanStep[] {
    return phase.targets(this.ctx).map((host) => ({
      phase: phase.id,
      title: phase.title,
      host,
      changes: phase.diff(this.ctx, host, observed.get(host)),
    }));
  }

  /** Observe every phase and list the changes. Never changes a host. */
  async plan(): Promise<Plan> {
    await this.gatherFacts();
    const steps: PlanStep[] = [];
    const problems: Problem[] = [];
    for (const phase of this.opts.phases) {
      this.checkSignal();
      const observed = await this.observePhase(phase);
      problems.push(...(phase.preflight?.(this.ctx, observed) ?? []));
      steps.push(...this.diffPhase(phase, observed));
    }
    return { steps: steps.filter((s) => s.changes.length > 0), problems, empty: steps.every((s) => s.changes.length === 0) };
  }

  /**
   * Converge every host, phase by phase. Each phase is observed again right
   * before it runs (earlier phases changed the hosts), its preflight checked,
   * its changes applied, and — when something changed — observed once more
   * to prove it converged.
   */
  async apply(): Promise<ApplyResult> {
    const t0 = Date.now();
    await this.gatherFacts();
    const applied: PlanStep[] = [];
    for (const phase of this.opts.phases) {
      this.checkSignal();
      const tp = Date.now();
      const observed = await this.observePhase(phase);
      const problems = phase.preflight?.(this.ctx, observed) ?? [];
      const errors = problems.filter((p) => p.severity === 'error');
      if (errors.length) throw new PreflightError(phase.title, errors);
      for (const w of problems) this.events({ type: 'warning', phase: phase.id, message: `${w.path}: ${w.message}` });
      const steps = this.diffPhase(phase, observed).filter((s) => s.changes.length > 0);
      this.events({ type: 'phase-start', phase: phase.id, title: phase.title, hosts: steps.map((s) => s.host) });
      const failures: Error[] = [];
      await runBounded(steps, phase.serial ? 1 : this.concurrency, async (step) => {
        if (phase.serial && failures.length) return; // never go on to the next server after one failed
        try {
          await this.applyStep(phase, step);
          applied.push(step);
        } catch (e) {
          const err = e instanceof InterruptedError || e instanceof HostError ? e : new HostError(step.host, phase.title, e);
          this.events({ type: 'host-failed', phase: phase.id, host: step.host, error: causeText(err) });
          failures.push(err);
        }
      });
      const interrupted = failures.find((e) => e instanceof InterruptedError);
      if (interrupted) throw interrupted;
      if (failures.length) throw new MultiHostError(failures);
      if (steps.length) {
        const again = this.diffPhase(phase, await this.observePhase(phase)).filter((s) => s.changes.length > 0);
        if (again.length) {
          throw new MultiHostError(again.map((s) => new HostError(s.host, phase.title, `did not converge; still to do: ${s.changes.map((c) => c.summary).join('; ')}`)));
        }
      }
      this.events({ type: 'phase-done', phase: phase.id, changed: steps.length, ms: Date.now() - tp });
    }
    return { applied, changed: applied.reduce((n, s) => n + s.changes.length, 0), ms: Date.now() - t0 };
  }

  private async applyStep(phase: AnyPhase<C>, step: PlanStep): Promise<void> {
    const th = Date.now();
    const host = await this.host(step.host);
    this.events({ type: 'host-start', phase: phase.id, host: step.host, changes: step.changes.length });
    for (const c of step.changes) {
      this.checkSignal();
      const tc = Date.now();
      this.events({ type: 'change-start', phase: phase.id, host: step.host, summary: c.summary });
      await c.apply(host);
      this.events({ type: 'change-done', phase: phase.id, host: step.host, summary: c.summary, ms: Date.now() - tc });
    }
    if (phase.settle) await phase.settle(this.ctx, host, step.changes);
    this.events({ type: 'host-done', phase: phase.id, host: step.host, ms: Date.now() - th });
  }

  private checkSignal(): void {
    if (this.opts.signal?.aborted) throw new InterruptedError();
  }

  async close(): Promise<void> {
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.allSettled(all.map(async (p) => (await p).close()));
  }
}

/**
 * A host's state forbids going on (e.g. the datastore's auto_increment
 * settings). Raised before the phase changes anything.
 */
export class PreflightError extends Error {
  constructor(
    phase: string,
    readonly problems: Problem[],
  ) {
    super(`${phase}: preflight checks failed:\n${problems.map((p) => `  - ${p.path}: ${p.message}${p.hint ? `\n    fix: ${p.hint}` : ''}`).join('\n')}`);
    this.name = 'PreflightError';
  }
}
