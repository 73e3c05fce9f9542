/**
 * The result of `k8s-ha verify`: one line per check with its result and its
 * time (PRODUCT.md: prove the cluster works). Pure: built and formatted here,
 * printed by the CLI.
 */

export type CheckStatus = 'pass' | 'fail' | 'skip';

export interface CheckResult {
  /** Stable id for scripts, e.g. `nodes-ready`, `drill:server1`. */
  id: string;
  title: string;
  status: CheckStatus;
  /** What was seen; for a skip, why it was skipped; for a failure, why and what to look at. */
  detail: string;
  ms: number;
}

export interface VerifyReport {
  cluster: string;
  checks: CheckResult[];
  /** True when no check failed (skips do not fail a run). */
  ok: boolean;
  ms: number;
}

export function makeReport(cluster: string, checks: CheckResult[], ms: number): VerifyReport {
  return { cluster, checks, ok: checks.every((c) => c.status !== 'fail'), ms };
}

const MARK: Record<CheckStatus, string> = { pass: 'PASS', fail: 'FAIL', skip: 'SKIP' };
const COLOR: Record<CheckStatus, string> = { pass: '\x1b[32m', fail: '\x1b[31m', skip: '\x1b[33m' };

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** One check as a line (continuation lines indented), for live output and the report. */
export function formatCheck(c: CheckResult, o: { color?: boolean } = {}): string {
  const mark = o.color ? `${COLOR[c.status]}${MARK[c.status]}\x1b[0m` : MARK[c.status];
  const detail = c.detail ? `\n       ${c.detail.split('\n').join('\n       ')}` : '';
  return `${mark}  ${c.title} (${seconds(c.ms)})${detail}`;
}

/** The whole report: every check, then a summary line naming the failed and skipped checks. */
export function formatReport(r: VerifyReport, o: { color?: boolean } = {}): string {
  const lines = r.checks.map((c) => formatCheck(c, o));
  const count = (s: CheckStatus) => r.checks.filter((c) => c.status === s);
  const failed = count('fail');
  const skipped = count('skip');
  const tail = [
    `${count('pass').length} passed`,
    `${failed.length} failed${failed.length ? ` (${failed.map((c) => c.id).join(', ')})` : ''}`,
    `${skipped.length} skipped${skipped.length ? ` (${skipped.map((c) => c.id).join(', ')})` : ''}`,
  ].join(', ');
  return `${lines.join('\n')}\n\n${r.ok ? 'Cluster verified' : 'Verification FAILED'}: ${tail}, in ${seconds(r.ms)}.\n`;
}

export function reportToJSON(r: VerifyReport): Record<string, unknown> {
  return { cluster: r.cluster, ok: r.ok, ms: r.ms, checks: r.checks.map((c) => ({ id: c.id, title: c.title, status: c.status, detail: c.detail, ms: c.ms })) };
}
