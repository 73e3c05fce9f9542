import { actionSign, changeToJSON, type ChangeAction } from '../../engine/change.js';
import type { Plan, PlanStep } from '../../engine/engine.js';
import type { Problem } from '../../engine/errors.js';

/**
 * `plan` output: per phase, per host, every change, with file diffs. The
 * phases mask the diffs they build; everything printed is masked once more
 * with every secret of the run where the CLI writes it (cli/io.ts maskedIO).
 */
export function formatPlan(plan: Plan, opts: { color?: boolean } = {}): string {
  const c = colors(opts.color ?? false);
  const out: string[] = [];
  if (plan.problems.length) {
    out.push(c.bold('Preflight:'));
    for (const p of plan.problems) out.push(`  ${p.severity === 'error' ? c.red('error') : c.yellow('warning')} ${p.path}: ${p.message}${p.hint ? `\n      fix: ${p.hint}` : ''}`);
    out.push('');
  }
  if (plan.empty) {
    out.push(c.green('No changes. Every host matches the cluster file.'));
    return out.join('\n') + '\n';
  }
  let lastPhase = '';
  for (const step of plan.steps) {
    if (step.phase !== lastPhase) {
      out.push(c.bold(`== ${step.title}`));
      const r = plan.rollouts.find((x) => x.phase === step.phase);
      // The order only matters when it is more than "all at once".
      if (r && r.batches.length > 1) out.push(`  ${c.dim(`rollout${r.describe ? ` (${r.describe})` : ''}: ${r.batches.map((b) => b.join(' + ')).join(' -> ')}`)}`);
      lastPhase = step.phase;
    }
    out.push(`  ${c.cyan(step.host)}:`);
    for (const ch of step.changes) {
      const via = ch.target.host !== step.host ? c.dim(` (on ${ch.target.host})`) : '';
      out.push(`    ${sign(ch.action, c)} ${ch.summary}${via}`);
      if (ch.detail) out.push(...ch.detail.split('\n').map((l) => `        ${colorDiffLine(l, c)}`));
    }
  }
  const n = countChanges(plan.steps);
  const hosts = new Set(plan.steps.map((s) => s.host)).size;
  const by = (a: ChangeAction[]) => plan.steps.reduce((k, st) => k + st.changes.filter((ch) => a.includes(ch.action)).length, 0);
  const counts = [`${by(['create'])} to create`, `${by(['update', 'restart', 'reload'])} to update, restart or reload`, `${by(['delete'])} to delete`, `${by(['run'])} to run`];
  out.push('', c.bold(`Plan: ${n} change${n === 1 ? '' : 's'} on ${hosts} host${hosts === 1 ? '' : 's'} (${counts.join(', ')}).`));
  return out.join('\n') + '\n';
}

export function countChanges(steps: PlanStep[]): number {
  return steps.reduce((n, s) => n + s.changes.length, 0);
}

/** The plan as data, for `--json`. */
export function planToJSON(plan: Plan): unknown {
  return {
    empty: plan.empty,
    changes: countChanges(plan.steps),
    problems: plan.problems,
    rollouts: plan.rollouts.map((r) => ({ phase: r.phase, batches: r.batches, ...(r.describe ? { describe: r.describe } : {}) })),
    steps: plan.steps.map((s) => ({
      phase: s.phase,
      host: s.host,
      changes: s.changes.map(changeToJSON),
    })),
  };
}

export function formatProblems(problems: Problem[], file: string): string {
  return problems
    .map((p) => {
      const where = p.line ? `${file}:${p.line}:${p.column ?? 1}` : file;
      return `${where}: ${p.severity} ${p.path}: ${p.message}${p.hint ? `\n    fix: ${p.hint}` : ''}`;
    })
    .join('\n');
}

type Colors = ReturnType<typeof colors>;
export function colors(on: boolean) {
  const w = (code: string) => (s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { bold: w('1'), red: w('31'), green: w('32'), yellow: w('33'), cyan: w('36'), dim: w('2') };
}

/** `+` create, `~` update/restart/reload, `-` delete, `>` run (engine/change.ts). */
function sign(action: ChangeAction, c: Colors): string {
  const s = actionSign(action);
  return s === '+' ? c.green(s) : s === '-' ? c.red(s) : s === '~' ? c.yellow(s) : c.cyan(s);
}

function colorDiffLine(l: string, c: Colors): string {
  if (l.startsWith('+') && !l.startsWith('+++')) return c.green(l);
  if (l.startsWith('-') && !l.startsWith('---')) return c.red(l);
  if (l.startsWith('@@')) return c.cyan(l);
  return l;
}
