import type { Command } from './quote.js';
import type { Secret } from '../util/secret.js';

/** What a command returned. `code` is the exit status (null when killed). */
export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Fed to the command's standard input: the way secrets travel. */
  stdin?: string | Buffer | Secret;
  /** Run as root through sudo (when the host's user is not root). Default: true. */
  sudo?: boolean;
  /** Milliseconds before the command is abandoned. Default: 120000. */
  timeoutMs?: number;
  /** Do not throw on a non-zero exit; return the result. Default: false. */
  allowFailure?: boolean;
}

export interface FileMeta {
  mode: number;
  owner: string;
  group: string;
  size: number;
  sha256: string;
}

export interface WriteOptions {
  /** File mode. Default: 0o644. */
  mode?: number;
  /** Default: root. */
  owner?: string;
  /** Default: root. */
  group?: string;
  /**
   * A check run against the new content before it replaces the old, e.g.
   * `nginx -t -c {}`. The command's text `{}` is replaced by the temporary
   * path. A failing check leaves the old file in place and throws.
   */
  check?: (tmpPath: string) => Command;
}

/**
 * One machine k8s-ha works on. The SSH host and the in-memory host implement
 * it; phases see only this interface. Reading methods never change the host.
 */
export interface Host {
  readonly name: string;
  readonly address: string;
  /** Run a command (built with `sh`), as root by default. Throws CommandError on failure. */
  exec(cmd: Command, opts?: ExecOptions): Promise<ExecResult>;
  /** The file's content, or null when it does not exist. */
  readFile(path: string): Promise<Buffer | null>;
  /** Mode, owner, size and hash, or null when the file does not exist. */
  stat(path: string): Promise<FileMeta | null>;
  /** Write atomically: a temp file beside the target, checked, then renamed. */
  writeFile(path: string, content: string | Buffer, opts?: WriteOptions): Promise<void>;
  /** Remove a file; no error when it is already gone. */
  removeFile(path: string): Promise<void>;
  close(): Promise<void>;
}

/** A remote command failed: names the host, the command, the exit code and stderr. */
export class CommandError extends Error {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly code: number | null,
    readonly stderr: string,
    readonly stdout = '',
  ) {
    const tail = stderr.trim().split('\n').slice(-5).join('\n    ');
    super(`${host}: \`${command}\` exited with ${code ?? 'a signal'}${tail ? `:\n    ${tail}` : ''}`);
    this.name = 'CommandError';
  }
}
