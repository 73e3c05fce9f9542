import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CliIO } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import type { RunHooks } from '../../src/cli/commands/plan.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process on a temp directory, capturing its output. */
export async function runCli(argv: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; hooks?: RunHooks; tty?: boolean; answers?: string[]; stdinTTY?: boolean }): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const answers = [...(opts.answers ?? [])];
  const io: CliIO = {
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
    env: { HOME: opts.cwd, ...(opts.env ?? {}) },
    cwd: opts.cwd,
    isTTY: opts.tty ?? false,
    // stdinTTY alone: a terminal at the keyboard with output piped (`| tee log`).
    ...(opts.tty || opts.stdinTTY ? { prompt: async () => answers.shift() ?? '' } : {}),
  };
  const code = await main(argv, io, opts.hooks ?? {});
  return { code, stdout, stderr };
}

export function tempDir(t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'k8s-ha-test-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}
