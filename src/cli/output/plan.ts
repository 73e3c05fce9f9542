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
      lastPhase = step.phase;
    }
    out.push(`  ${c.cyan(step.host)}:`);
    for (const ch of step.changes) {
      out.push(`    ${sign(ch.kind, c)} ${ch.summary}`);
      if (ch.detail) out.push(...ch.detail.split('\n').map((l) => `        ${colorDiffLine(l, c)}`));
    }
  }
  const n = countChanges(plan.steps);
  const hosts = new Set(plan.steps.map((s) => s.host)).size;
  out.push('', c.bold(`Plan: ${n} change${n === 1 ? '' : 's'} on ${hosts} host${hosts === 1 ? '' : 's'}.`));
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
    steps: plan.steps.map((s) => ({
      phase: s.phase,
      host: s.host,
      changes: s.changes.map((ch) => ({ kind: ch.kind, summary: ch.summary, ...(ch.detail ? { diff: ch.detail } : {}) })),
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

function sign(kind: string, c: Colors): string {
  if (kind === 'remove') return c.red('-');
  if (kind === 'service') return c.yellow('~');
  return c.green('+');
}

function colorDiffLine(l: string, c: Colors): string {
  if (l.startsWith('+') && !l.startsWith('+++')) return c.green(l);
  if (l.startsWith('-') && !l.startsWith('---')) return c.red(l);
  if (l.startsWith('@@')) return c.cyan(l);
  return l;
}
