import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { CommandError, FileCheckError, type ExecOptions, type FileMeta, type WriteOptions } from './host.js';
import { sh, type Command } from './quote.js';
import { maskSecrets } from '../util/secret.js';

/** A command's result with stdout kept as bytes, so binary files survive. */
export interface RawResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a command as `Host.exec` does (throws CommandError unless allowFailure). */
export type RunRaw = (cmd: Command, opts?: ExecOptions) => Promise<RawResult>;

// An exit status no tool we call uses, to tell "absent" from "failed".
const ABSENT = 66;

/**
 * File operations for any host reached through commands only (SSH with or
 * without sudo): one round trip for a read or a stat, one or three for a
 * write. Every path must be absolute, so none can be mistaken for an option.
 */
export async function readFileVia(run: RunRaw, host: string, path: string): Promise<Buffer | null> {
  const p = absolute(path);
  const cmd = sh`[ -e ${p} ] || exit ${ABSENT}; exec cat ${p}`;
  const r = await run(cmd, { allowFailure: true });
  if (r.code === ABSENT && !r.stderr) return null;
  if (r.code !== 0) throw new CommandError(host, cmd.text, r.code, r.stderr);
  return r.stdout;
}

export async function statVia(run: RunRaw, host: string, path: string): Promise<FileMeta | null> {
  const p = absolute(path);
  const cmd = sh`[ -e ${p} ] || exit ${ABSENT}; stat -L -c '%a %U %G %s' ${p} && if [ -f ${p} ]; then sha256sum < ${p}; fi`;
  const r = await run(cmd, { allowFailure: true });
  if (r.code === ABSENT && !r.stderr) return null;
  if (r.code !== 0) throw new CommandError(host, cmd.text, r.code, r.stderr);
  return parseStat(r.stdout.toString('utf8'), path);
}

/** Parses `stat -c '%a %U %G %s'` followed by an optional `sha256sum` line. */
export function parseStat(stdout: string, path: string): FileMeta {
  const [first = '', second = ''] = stdout.split('\n');
  const [mode, owner, group, size] = first.trim().split(' ');
  if (!mode || !owner || !group || !size) throw new Error(`stat ${path}: unexpected output ${JSON.stringify(first)}`);
  return {
    mode: parseInt(mode, 8),
    owner,
    group,
    size: Number(size),
    // A directory or device has no content hash.
    sha256: second.trim().split(/\s+/)[0] ?? '',
  };
}

export async function writeFileVia(
  run: RunRaw,
  host: string,
  path: string,
  content: string | Buffer,
  opts: WriteOptions = {},
): Promise<void> {
  const p = absolute(path);
  const dir = posix.dirname(p);
  // Beside the target, so the final rename stays on one filesystem (atomic);
  // a dot name so globbing config loaders (conf.d/*.conf) never pick it up.
  const tmp = posix.join(dir, `.${posix.basename(p)}.k8s-ha-${randomBytes(4).toString('hex')}`);
  const owner = `${opts.owner ?? 'root'}:${opts.group ?? 'root'}`;
  const mode = (opts.mode ?? 0o644).toString(8);
  const secrets = opts.secrets ?? [];
  // umask 077: the content is never readable by others before chmod narrows or widens it.
  const stage = sh`mkdir -p ${dir} && umask 077 && cat > ${tmp} && chown ${owner} ${tmp} && chmod ${mode} ${tmp}`;
  const place = sh`mv -fT ${tmp} ${p}`;
  const cleanup = sh`rm -f ${tmp}`;

  if (!opts.check) {
    await run(sh`{ ${stage} && ${place}; } || { rc=$?; ${cleanup}; exit $rc; }`, { stdin: content, secrets });
    return;
  }
  await run(sh`{ ${stage}; } || { rc=$?; ${cleanup}; exit $rc; }`, { stdin: content, secrets });
  const check = opts.check(tmp);
  let r: RawResult;
  try {
    r = await run(check, { allowFailure: true, secrets });
  } catch (err) {
    await run(cleanup, { allowFailure: true }).catch(() => undefined);
    throw err;
  }
  if (r.code !== 0) {
    await run(cleanup, { allowFailure: true });
    const output = [r.stdout.toString('utf8'), r.stderr].filter((s) => s.trim()).join('\n');
    throw new FileCheckError(host, path, maskSecrets(check.text, secrets), r.code, maskSecrets(output, secrets));
  }
  await run(sh`${place} || { rc=$?; ${cleanup}; exit $rc; }`);
}

export async function removeFileVia(run: RunRaw, path: string): Promise<void> {
  await run(sh`rm -f ${absolute(path)}`);
}

function absolute(path: string): string {
  if (!path.startsWith('/')) throw new Error(`a host path must be absolute, got ${JSON.stringify(path)}`);
  return posix.normalize(path);
}
