import type { SecretSet } from '../util/secret.js';

/**
 * Everything a command touches outside itself. The real process passes its
 * own streams; tests pass buffers, so commands run in-process.
 */
export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** True when stdout is a terminal (live progress, prompts allowed). */
  isTTY: boolean;
  /** Reads one answer from the terminal; absent when standard input is not a terminal. */
  prompt?: (question: string) => Promise<string>;
  /**
   * Every secret this command has seen; all it prints through stdout and
   * stderr is masked with it (cli/main.ts sets it). Commands that open a
   * cluster hand it to ClusterRun.open, which fills it.
   */
  secrets?: SecretSet;
}

/** `io` with everything written through it masked with `secrets` (the CLI's one masking step). */
export function maskedIO(io: CliIO, secrets: SecretSet): CliIO {
  return { ...io, stdout: (t) => io.stdout(secrets.mask(t)), stderr: (t) => io.stderr(secrets.mask(t)), secrets };
}

/** Exit codes, documented in the README. */
export const EXIT = {
  ok: 0,
  /** An operation failed on a host (or a check failed). */
  failed: 1,
  /** Bad input: the cluster file, a flag or an argument. No host was contacted. */
  usage: 2,
  /** `plan --detailed-exitcode`: changes pending. */
  changes: 3,
  /** Interrupted (Ctrl-C). */
  interrupted: 130,
} as const;

export function processIO(): CliIO {
  return {
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    env: process.env,
    cwd: process.cwd(),
    isTTY: Boolean(process.stdout.isTTY),
  };
}
