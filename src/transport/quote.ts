import { Secret } from '../util/secret.js';

/**
 * A shell command built through the `sh` template: every interpolated value is
 * quoted, never concatenated. Secrets are refused: they would show in `ps` on
 * the remote host. Pass them as standard input or file content instead.
 */
export class Command {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** Quote one value for a POSIX shell. */
export function quote(value: string | number): string {
  const s = String(value);
  if (s === '') return "''";
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export type ShValue = string | number | Command | readonly (string | number)[];

/**
 * sh`systemctl restart ${unit}` -> Command. Arrays become several quoted
 * words; a nested Command is inserted as is (it was quoted when built).
 */
export function sh(strings: TemplateStringsArray, ...values: ShValue[]): Command {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] ?? '');
  });
  return new Command(out);
}

function render(v: ShValue | Secret): string {
  if (v instanceof Secret) throw new Error('a secret may not be put on a command line; pass it as stdin or file content');
  if (v instanceof Command) return v.text;
  if (Array.isArray(v)) return v.map((x) => quote(x)).join(' ');
  return quote(v as string | number);
}

/** Join several commands with `&&`. */
export function and(...cmds: Command[]): Command {
  return new Command(cmds.map((c) => c.text).join(' && '));
}
