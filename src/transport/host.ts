import type { Readable, Writable } from 'node:stream';
import type { Command } from './quote.js';
import type { Secret } from '../util/secret.js';

/** What a command returned. `code` is the exit status (null when killed). */
export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /**
   * Fed to the command's standard input: the way secrets travel. A stream is
   * piped in as it is read (a database dump of any size), never held whole.
   */
  stdin?: string | Buffer | Secret | Readable;
  /**
   * The command's standard output goes here as it arrives, with backpressure,
   * instead of into the result (whose stdout is then empty): a dump streamed
   * to a local file without ever being held in memory or left on the host.
   * Default: collected into the result.
   */
  stdout?: Writable;
  /** Run as root through sudo (when the host's user is not root). Default: true. */
  sudo?: boolean;
  /** Milliseconds before the command is abandoned. Default: 120000. */
  timeoutMs?: number;
  /** Do not throw on a non-zero exit; return the result. Default: false. */
  allowFailure?: boolean;
  /**
   * Secrets that may appear in the command's output (e.g. a config file
   * echoed back); masked in any error. The sudo password and a Secret given
   * as stdin are always masked. Default: none.
   */
  secrets?: readonly Secret[];
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
   * A check run against the new content before it replaces the old, given the
   * temporary path, e.g. `(tmp) => sh\`nginx -t -c ${tmp}\``. A failing check
   * leaves the old file in place and throws FileCheckError. Default: none.
   */
  check?: (tmpPath: string) => Command;
  /** Secrets in the content, masked in any error (a checker may echo lines). Default: none. */
  secrets?: readonly Secret[];
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
    /** How to fix it, when the failure is a known one (e.g. sudo wants a password). */
    readonly hint?: string,
  ) {
    const tail = stderr.trim().split('\n').slice(-5).join('\n    ');
    super(
      `${host}: \`${command}\` exited with ${code ?? 'a signal'}${tail ? `:\n    ${tail}` : ''}` +
        (hint ? `\n  hint: ${hint}` : ''),
    );
    this.name = 'CommandError';
  }
}

/** A command ran longer than its timeout; it was killed on the host. */
export class CommandTimeoutError extends CommandError {
  constructor(
    host: string,
    command: string,
    readonly timeoutMs: number,
    stderr = '',
  ) {
    super(host, command, null, stderr);
    this.name = 'CommandTimeoutError';
    this.message =
      `${host}: \`${command}\` did not finish within ${formatMs(timeoutMs)} and was stopped` +
      `\n  hint: if it is merely slow, give it a longer timeout (timeoutMs); otherwise look at what it waits for on the host`;
  }
}

/**
 * The host could not be reached, or the connection to it was lost. Message:
 * `NAME (address:port): DOING: cause`, then a hint. A later call may reconnect.
 */
export class ConnectionError extends Error {
  constructor(
    readonly host: string,
    readonly endpoint: string,
    readonly doing: string,
    readonly reason: string,
    readonly hint?: string,
    options?: { cause?: unknown; hostKeyChanged?: boolean },
  ) {
    super(`${host} (${endpoint}): ${doing}: ${reason}${hint ? `\n  hint: ${hint}` : ''}`, options);
    this.name = 'ConnectionError';
    this.hostKeyChanged = options?.hostKeyChanged ?? false;
  }

  /**
   * The host answered with another key than the pinned one (re-installed, or
   * someone in between): never a host that is merely down, so a run must
   * not go on without it as it does for an unreachable agent.
   */
  readonly hostKeyChanged: boolean;
}

/** The check of a new file's content failed; the old file was left in place. */
export class FileCheckError extends Error {
  constructor(
    readonly host: string,
    readonly path: string,
    readonly command: string,
    readonly code: number | null,
    /** The checker's stdout and stderr, secrets masked. */
    readonly output: string,
  ) {
    const lines = output.trim().split('\n').slice(-20).join('\n    ');
    super(
      `${host}: writing ${path}: the check \`${command}\` rejected the new content ` +
        `(exit ${code ?? 'a signal'}); the old file was left in place${lines ? `:\n    ${lines}` : ''}`,
    );
    this.name = 'FileCheckError';
  }
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
