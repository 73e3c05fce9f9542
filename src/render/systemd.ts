import { Secret } from '../util/secret.js';
import { RenderInputError, SecretRenderOptions, assertNoControlChars, byString, secretText } from './common.js';

/** One `Key=Value` line. Keys repeat where systemd allows it (ExecStartPre, EnvironmentFile...). */
export type UnitEntry = readonly [key: string, value: string];

export interface UnitFile {
  /** Comment lines at the top, without the leading '#'. */
  comment?: string[];
  Unit: UnitEntry[];
  Service?: UnitEntry[];
  /** For a .socket unit. */
  Socket?: UnitEntry[];
  /** For a .timer unit. */
  Timer?: UnitEntry[];
  Install?: UnitEntry[];
}

// Sections always come in this order. Entries are NOT sorted: systemd runs
// ExecStartPre lines in order and later EnvironmentFile lines override
// earlier ones, so the caller's order is the meaning and stays as given
// (which is as deterministic as the caller's code).
const SECTIONS = ['Unit', 'Service', 'Socket', 'Timer', 'Install'] as const;

/** Render a unit file from its sections. Values may not span lines. */
export function renderUnit(unit: UnitFile): string {
  const out: string[] = [];
  for (const c of unit.comment ?? []) {
    assertNoControlChars('comment', c);
    out.push(c === '' ? '#' : `# ${c}`);
  }
  for (const name of SECTIONS) {
    const entries = unit[name];
    if (entries === undefined) continue;
    if (out.length > 0) out.push('');
    out.push(`[${name}]`);
    entries.forEach(([key, value], i) => {
      if (!/^[A-Za-z][A-Za-z0-9]*$/.test(key)) throw new RenderInputError(`${name}[${i}]`, `not a unit key: ${JSON.stringify(key)}`);
      assertNoControlChars(`${name}.${key}`, value);
      out.push(`${key}=${value}`);
    });
  }
  return out.join('\n') + '\n';
}

/**
 * One value for a systemd EnvironmentFile, double-quoted. Inside double
 * quotes systemd's parser takes a backslash before `"`, `\`, `` ` `` and `$`
 * as an escape (and expands nothing), so those four are escaped.
 */
export function envFileValue(value: string): string {
  return `"${value.replace(/["\\`$]/g, (c) => `\\${c}`)}"`;
}

/**
 * An EnvironmentFile: `KEY="value"` lines sorted by key. Secrets are
 * revealed unless `maskSecrets`; the file must then be written mode 0600.
 */
export function renderEnvFile(vars: Readonly<Record<string, string | Secret>>, opts?: SecretRenderOptions): string {
  const keys = Object.keys(vars).sort(byString);
  const out: string[] = [];
  for (const key of keys) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new RenderInputError(key, 'not an environment variable name');
    const v = vars[key];
    const text = v instanceof Secret ? secretText(v, opts) : v;
    if (typeof text !== 'string') throw new RenderInputError(key, 'must be a string or a Secret');
    assertNoControlChars(key, v instanceof Secret ? v.reveal() : text);
    out.push(`${key}=${envFileValue(text)}`);
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}
