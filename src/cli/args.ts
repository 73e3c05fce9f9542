import { parseArgs, type ParseArgsConfig } from 'node:util';
import { relative } from 'node:path';
import { UserError } from '../engine/errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * node:util parseArgs, with its errors turned into user errors (exit 2) that
 * name the command and point at its --help.
 */
type WithHelp<O extends Options> = O & { help: { type: 'boolean'; short: 'h' } };
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: WithHelp<O>; allowPositionals: boolean; strict: true }>>;

export function parse<O extends Options>(command: string, argv: string[], options: O, allowPositionals = false): Parsed<O> {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } } as WithHelp<O>, allowPositionals, strict: true });
  } catch (e) {
    const msg = (e as Error).message.replace(/^Unknown option/, 'unknown option').replace(/\. To specify a positional argument.*$/s, '');
    throw new UserError(`${command}: ${msg}; see \`k8s-ha ${command} --help\``);
  }
}

export function intFlag(command: string, name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UserError(`${command}: --${name} must be a whole number from ${min} to ${max}, not "${value}"`);
  return n;
}

/**
 * The cluster file: --file or the one positional argument (`k8s-ha validate
 * cluster.yaml`, as users type it), else $K8S_HA_FILE, else ./cluster.yaml.
 */
export function clusterFileArg(file: string | undefined, env: NodeJS.ProcessEnv, cwd: string, positionals: string[] = [], command = 'k8s-ha'): string {
  if (positionals.length > 1) throw new UserError(`${command}: one cluster file at a time, not ${positionals.map((p) => JSON.stringify(p)).join(' ')}; see \`k8s-ha ${command} --help\``);
  if (positionals.length === 1 && file !== undefined && positionals[0] !== file) {
    throw new UserError(`${command}: two cluster files, -f ${file} and ${positionals[0]}; give one`);
  }
  const f = file ?? positionals[0] ?? env.K8S_HA_FILE ?? 'cluster.yaml';
  return f.startsWith('/') ? f : `${cwd}/${f}`;
}

/** A path as the user would type it: relative below the working directory, absolute elsewhere. */
export function shownPath(cwd: string, p: string): string {
  const r = relative(cwd, p);
  return r === '' || r.startsWith('..') ? p : r;
}
