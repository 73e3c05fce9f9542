import { ConnectionError, type Host } from '../transport/host.js';
import { gatherFacts, parseFacts } from '../transport/os.js';
import { runBounded } from '../transport/pool.js';
import { SecretSet, type Secret } from '../util/secret.js';
import { HostError, InterruptedError, MultiHostError, type Problem, causeText } from './errors.js';
import { type EventSink, noEvents } from './events.js';
import { actionSign, changeKey, type Change } from './change.js';
import type { AnyPhase, HostFacts, Rollout, RunContext } from './phase.js';

export interface EngineOptions<C> {
  cluster: C;
  /**
   * Every host in the cluster file (facts are gathered from all of them). An
   * `optional` host (an agent) that cannot be connected to is left out of
   * the run instead of stopping it: the plan and the apply say so, and the
   * work that does not need it goes ahead. Default: every host is needed.
   */
  hosts: { name: string; address: string; optional?: boolean }[];
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

/** A phase's rollout in the plan: its changed hosts in batches, in order. */
export interface PhaseRollout extends Rollout {
  phase: string;
  title: string;
}

export interface Plan {
  steps: PlanStep[];
  /** Preflight problems found (errors stop an apply). */
  problems: Problem[];
  /** True when no host needs any change. */
  empty: boolean;
  /** Per phase with changes: the order and batches its hosts are changed in. */
  rollouts: PhaseRollout[];
  /**
   * What each phase observed (phase id -> host -> observation), so that
   * `apply(plan)` runs this plan instead of observing everything again.
   */
  readonly observed: ReadonlyMap<string, ReadonlyMap<string, unknown>>;
  /** Optional hosts that could not be reached: nothing was planned for them. */
  unreachable?: UnreachableHost[];
}

export interface UnreachableHost {
  host: string;
  /** Why the connection failed (the transport's message). */
  reason: string;
}

export interface ApplyResult {
  /** Optional hosts left out because they could not be reached: apply converged the rest. */
  unreachable?: UnreachableHost[];
  applied: PlanStep[];
  changed: number;
  ms: number;
}

/**
 * Runs a pipeline: observe -> diff -> (apply). Reading is free; only
 * `apply` calls a Change's apply, so `plan` shows exactly what `apply` does.
 */
export class Engine<C> {
  private readonly conns = new Map<string, Promise<Host>>();
  private readonly facts = new Map<string, HostFacts>();
  /** Optional hosts whose connection failed this run, and why. */
  private readonly unreachable = new Map<string, Error>();
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
      unreachable: (name) => this.unreachable.has(name),
      events: this.events,
      signal: opts.signal,
    };
  }

  /** The pipeline this engine runs, in order. */
  get phases(): readonly AnyPhase<C>[] {
    return this.opts.phases;
  }

  /** The connected host; connects on first use and reuses the connection. */
  host(name: string): Promise<Host> {
    let p = this.conns.get(name);
    if (!p) {
      const h = this.opts.hosts.find((x) => x.name === name);
      if (!h) return Promise.reject(new Error(`no host named ${name} in the cluster file`));
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
      if (this.facts.has(h.name) || this.unreachable.has(h.name)) return;
      try {
        const host = await this.host(h.name);
        const r = await host.exec(gatherFacts(), { sudo: false });
        const f = parseFacts(r.stdout);
        if (f.init !== 'systemd') throw new Error(`k8s-ha needs systemd as init (found ${f.init || 'unknown'})`);
        this.facts.set(h.name, f);
        this.events({ type: 'facts', host: h.name, os: `${f.os} ${f.osVersion}`, arch: f.arch });
      } catch (e) {
        // A changed host key is no dead host: it stops the run with the way to accept it.
        if (h.optional && e instanceof ConnectionError && !e.hostKeyChanged) {
          this.unreachable.set(h.name, e);
          this.events({ type: 'warning', message: `${h.name} cannot be reached (${e.reason}): it is left out of this run, the other hosts go ahead` });
          return;
        }
        errors.push(e instanceof HostError ? e : new HostError(h.name, 'gathering facts', e));
      }
    });
    if (errors.length) throw new MultiHostError(errors);
  }

  /** The phase's targets this run can work on (unreachable optional hosts left out). */
  private targetsOf(phase: AnyPhase<C>): string[] {
    return phase.targets(this.ctx).filter((n) => !this.unreachable.has(n));
  }

  private unreachableList(): UnreachableHost[] {
    return [...this.unreachable].map(([host, e]) => ({ host, reason: e instanceof ConnectionError ? e.reason : causeText(e) }));
  }

  private async observePhase(phase: AnyPhase<C>): Promise<Map<string, unknown>> {
    const observed = new Map<string, unknown>();
    const errors: Error[] = [];
    const targets = this.targetsOf(phase);
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

  /** The phase's steps with changes, in target order. */
  private diffPhase(phase: AnyPhase<C>, observed: ReadonlyMap<string, unknown>): PlanStep[] {
    return this.targetsOf(phase)
      .map((host) => ({ phase: phase.id, title: phase.title, host, changes: phase.diff(this.ctx, host, observed.get(host), observed) }))
      .filter((s) => s.changes.length > 0);
  }

  /** The phase's decision on order and batches, or batches of `phase.batch` (default: all at once). */
  private rolloutOf(phase: AnyPhase<C>, steps: PlanStep[], observed: ReadonlyMap<string, unknown>): PhaseRollout {
    const changed = steps.map((s) => s.host);
    if (phase.rollout) {
      const r = phase.rollout(this.ctx, changed, observed);
      // Every changed host exactly once: a rollout that forgets one would leave work undone.
      const listed = r.batches.flat();
      const missing = changed.filter((h) => !listed.includes(h));
      if (missing.length || listed.length !== new Set(listed).size) {
        throw new Error(`${phase.title}: the rollout lists ${listed.join(', ') || 'no host'} but the hosts with changes are ${changed.join(', ')}`);
      }
      return { phase: phase.id, title: phase.title, ...r, batches: r.batches.filter((b) => b.length > 0) };
    }
    const size = Math.max(1, phase.batch ?? changed.length);
    const batches: string[][] = [];
    for (let i = 0; i < changed.length; i += size) batches.push(changed.slice(i, i + size));
    return { phase: phase.id, title: phase.title, batches, ...(phase.batch === 1 && changed.length > 1 ? { describe: 'one at a time' } : {}) };
  }

  /** Observe every phase and list the changes. Never changes a host. */
  async plan(): Promise<Plan> {
    await this.gatherFacts();
    const steps: PlanStep[] = [];
    const problems: Problem[] = [];
    const rollouts: PhaseRollout[] = [];
    const observedAll = new Map<string, ReadonlyMap<string, unknown>>();
    for (const phase of this.opts.phases) {
      this.checkSignal();
      const observed = await this.observePhase(phase);
      observedAll.set(phase.id, observed);
      problems.push(...(phase.preflight?.(this.ctx, observed) ?? []));
      const mine = this.diffPhase(phase, observed);
      steps.push(...mine);
      if (mine.length) rollouts.push(this.rolloutOf(phase, mine, observed));
    }
    const unreachable = this.unreachableList();
    return { steps, problems, empty: steps.length === 0, rollouts, observed: observedAll, ...(unreachable.length ? { unreachable } : {}) };
  }

  /**
   * Run the plan that was shown (or a fresh one), phase by phase. A phase is
   * observed again right before it runs only when an earlier phase changed
   * something (its hosts may look different now); if it then has work the
   * plan did not show, it stops with PlanChangedError instead of doing it.
   * A phase that changed something is observed once more to prove it converged.
   */
  async apply(shown?: Plan): Promise<ApplyResult> {
    const t0 = Date.now();
    const plan = shown ?? (await this.plan());
    const refused = plan.problems.filter((p) => p.severity === 'error');
    if (refused.length) throw new PreflightError('preflight', refused);
    await this.gatherFacts();
    const applied: PlanStep[] = [];
    const started: AnyPhase<C>[] = [];
    let changedSoFar = false;
    let ok = false;
    try {
      for (const phase of this.opts.phases) {
        this.checkSignal();
        const tp = Date.now();
        const planned = plan.steps.filter((s) => s.phase === phase.id);
        let observed = plan.observed.get(phase.id);
        let steps = planned;
        if (changedSoFar || !observed) {
          observed = await this.observePhase(phase);
          const problems = phase.preflight?.(this.ctx, observed) ?? [];
          const errors = problems.filter((p) => p.severity === 'error');
          if (errors.length) throw new PreflightError(phase.title, errors);
          const shownWarnings = new Set(plan.problems.map((p) => `${p.path}: ${p.message}`));
          for (const w of problems) if (!shownWarnings.has(`${w.path}: ${w.message}`)) this.events({ type: 'warning', phase: phase.id, message: `${w.path}: ${w.message}` });
          steps = this.diffPhase(phase, observed);
          const seen = new Set(planned.flatMap((s) => s.changes.map(changeKey)));
          const unseen = steps.map((s) => ({ ...s, changes: s.changes.filter((c) => !seen.has(changeKey(c))) })).filter((s) => s.changes.length);
          if (unseen.length) throw new PlanChangedError(phase.title, unseen);
        }
        const rollout = this.rolloutOf(phase, steps, observed);
        this.events({ type: 'phase-start', phase: phase.id, title: phase.title, hosts: steps.map((s) => s.host) });
        if (steps.length) started.push(phase);
        const failures: Error[] = [];
        for (const batch of rollout.batches) {
          if (failures.length) break; // never go on to the next batch after one failed
          this.checkSignal();
          await runBounded(
            steps.filter((s) => batch.includes(s.host)),
            this.concurrency,
            async (step) => {
              try {
                await this.applyStep(phase, step);
                applied.push(step);
              } catch (e) {
                const err = e instanceof InterruptedError || e instanceof HostError ? e : new HostError(step.host, phase.title, e);
                this.events({ type: 'host-failed', phase: phase.id, host: step.host, error: causeText(err) });
                failures.push(err);
              }
            },
          );
        }
        const interrupted = failures.find((e) => e instanceof InterruptedError);
        if (interrupted) throw interrupted;
        if (failures.length) throw new MultiHostError(failures);
        if (steps.length) {
          const again = this.diffPhase(phase, await this.observePhase(phase));
          if (again.length) {
            throw new MultiHostError(again.map((s) => new HostError(s.host, phase.title, `did not converge; still to do: ${s.changes.map((c) => c.summary).join('; ')}`)));
          }
          changedSoFar = true;
        }
        this.events({ type: 'phase-done', phase: phase.id, changed: steps.length, ms: Date.now() - tp });
      }
      ok = true;
    } finally {
      for (const phase of started.reverse()) {
        if (!phase.cleanup) continue;
        try {
          await phase.cleanup(this.ctx, { ok });
        } catch (e) {
          this.events({ type: 'warning', phase: phase.id, message: `cleanup: ${causeText(e)}` });
        }
      }
    }
    const unreachable = this.unreachableList();
    return { applied, changed: applied.reduce((n, s) => n + s.changes.length, 0), ms: Date.now() - t0, ...(unreachable.length ? { unreachable } : {}) };
  }

  private async applyStep(phase: AnyPhase<C>, step: PlanStep): Promise<void> {
    const th = Date.now();
    const host = await this.host(step.host);
    this.events({ type: 'host-start', phase: phase.id, host: step.host, changes: step.changes.length });
    for (const c of step.changes) {
      this.checkSignal();
      const tc = Date.now();
      // A change may run on another host than the step's (a drain through a server).
      const on = c.target.host === step.host ? host : await this.host(c.target.host);
      const data = { action: c.action, target: c.target };
      this.events({ type: 'change-start', phase: phase.id, host: step.host, summary: c.summary, ...data });
      await c.apply(on);
      this.events({ type: 'change-done', phase: phase.id, host: step.host, summary: c.summary, ...data, ms: Date.now() - tc });
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

/**
 * Observed again right before it ran, a phase had work the shown plan did
 * not list (a host changed under the apply). Nothing of that phase was done.
 */
export class PlanChangedError extends Error {
  constructor(
    phase: string,
    readonly unseen: PlanStep[],
  ) {
    const lines = unseen.flatMap((s) => s.changes.map((c) => `  ${s.host}: ${actionSign(c.action)} ${c.summary}`));
    super(`${phase}: observed again before it ran, it has work the plan did not show, so it stopped before changing anything:\n${lines.join('\n')}\n  fix: run \`k8s-ha plan\` to see the whole plan now, then apply again`);
    this.name = 'PlanChangedError';
  }
}
