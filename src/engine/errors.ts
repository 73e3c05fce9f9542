/**
 * Two kinds of error (STYLE.md 7): a UserError is the user's to fix (bad
 * cluster file, bad flag) and is printed without a stack trace, exit code 2;
 * a HostError is operational: `host: doing X: cause`.
 */
export interface Problem {
  severity: 'error' | 'warning';
  /** Dotted path into the cluster file, e.g. `hosts[2].address`; or a flag. */
  path: string;
  message: string;
  /** How to fix it. */
  hint?: string;
  line?: number;
  column?: number;
}

export class UserError extends Error {
  constructor(
    message: string,
    readonly problems: Problem[] = [],
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export class HostError extends Error {
  constructor(
    readonly host: string,
    readonly action: string,
    override readonly cause: unknown,
  ) {
    super(`${host}: ${action}: ${causeText(cause)}`);
    this.name = 'HostError';
  }
}

/** Failures on several hosts, reported together. */
export class MultiHostError extends Error {
  constructor(readonly errors: Error[]) {
    super(errors.length === 1 ? errors[0]!.message : `${errors.length} hosts failed:\n${errors.map((e) => `  - ${e.message.split('\n').join('\n    ')}`).join('\n')}`);
    this.name = 'MultiHostError';
  }
}

/** The apply was interrupted (Ctrl-C); re-running it converges. */
export class InterruptedError extends Error {
  constructor() {
    super('interrupted: hosts may be part-way through a change; run `k8s-ha apply` again to converge');
    this.name = 'InterruptedError';
  }
}

export function causeText(cause: unknown): string {
  if (cause instanceof Error) return cause.message;
  return String(cause);
}
