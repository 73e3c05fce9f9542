import type { Host } from '../transport/host.js';

/**
 * A change is data (STYLE.md 2a, after Terraform's plan and Pulumi's diff):
 * what is done (`action`) to what (`target`: a host and one file, unit,
 * package set or object), and the state before and after, secrets masked.
 * `plan` prints it (`+ ~ - >`), `plan --json` carries it, a status page can
 * draw it; code decides on `action` and `target`, never on `summary` text.
 *
 * `apply` is the only code that changes a host, and only the engine calls it
 * (STYLE.md 2: one gate), on the host named by `target.host` — which may be
 * another host than the step's (a drain runs on a server for an agent).
 */
export type ChangeAction = 'create' | 'update' | 'delete' | 'restart' | 'reload' | 'run';

export type ChangeTarget = { host: string } & (
  | { file: string }
  | { unit: string }
  | { packages: string[] }
  /**
   * Anything else a host holds: a Kubernetes object (`Node/agent1`,
   * `IPAddressPool/metallb-system/pool`), datastore accounts
   * (`mariadb/k3s accounts`), a manifest, a certificate. Stable across runs:
   * the engine compares plans by it.
   */
  | { object: string }
);

export interface Change {
  action: ChangeAction;
  target: ChangeTarget;
  /** One line for people: what `plan` shows and progress events carry. */
  summary: string;
  /**
   * The target's state before and after, secrets masked: a file's content
   * (null: absent), a package's version, a unit's state ('active',
   * 'enabled'), an object's version. Absent when it says nothing useful.
   */
  before?: string | null;
  after?: string | null;
  /** A unified diff or other detail (SQL with the password masked), secrets masked. */
  detail?: string;
  apply(host: Host): Promise<void>;
}

/** The target without its host, as `file:/etc/x`, `unit:k3s`, `packages:a b`, `object:Node/a`. */
export function targetKey(t: ChangeTarget): string {
  if ('file' in t) return `file:${t.file}`;
  if ('unit' in t) return `unit:${t.unit}`;
  if ('packages' in t) return `packages:${t.packages.join(' ')}`;
  return `object:${t.object}`;
}

/** What makes two changes "the same work": host, action and target (not the words, not the content). */
export function changeKey(c: Pick<Change, 'action' | 'target'>): string {
  return `${c.target.host} ${c.action} ${targetKey(c.target)}`;
}

/** The plan's sign for an action: + create, ~ update/restart/reload, - delete, > run. */
export function actionSign(a: ChangeAction): '+' | '~' | '-' | '>' {
  switch (a) {
    case 'create':
      return '+';
    case 'delete':
      return '-';
    case 'run':
      return '>';
    default:
      return '~';
  }
}

/** True when `c` restarts (or starts) `unit` — how settle steps decide to wait. */
export function restartsUnit(c: Change, unit: string): boolean {
  return c.action === 'restart' && 'unit' in c.target && c.target.unit === unit;
}

/** The change as JSON (`plan --json`): everything but `apply`. */
export function changeToJSON(c: Change): Record<string, unknown> {
  return {
    action: c.action,
    target: c.target,
    summary: c.summary,
    ...(c.before !== undefined ? { before: c.before } : {}),
    ...(c.after !== undefined ? { after: c.after } : {}),
    ...(c.detail ? { diff: c.detail } : {}),
  };
}
