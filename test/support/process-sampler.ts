import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Lab } from '../../lab/index.js';

/**
 * For lab tests: the process lists of the lab's machines and of this host,
 * sampled while a command runs (a secret on a command line is readable by
 * every user of that machine), and the CLI run as a child process that a
 * test can stop or kill like a user's terminal would.
 */

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, '../..');

export class ProcessSampler {
  readonly samples: string[] = [];
  rounds = 0;
  #stop = false;
  #loop: Promise<void> | null = null;

  constructor(
    private readonly lab: Lab,
    private readonly machines: string[],
  ) {}

  /** Samples `ps -eo args` on every machine and locally, round after round, until stop(). */
  start(): void {
    this.#stop = false;
    this.#loop = (async () => {
      while (!this.#stop) {
        const lists = await Promise.all([
          ...this.machines.map((m) => this.lab.exec(m, ['ps', '-eo', 'args'], { timeoutMs: 10_000 }).then((r) => r.stdout).catch(() => '')),
          run('ps', ['-eo', 'args'], { maxBuffer: 16 << 20 }).then((r) => r.stdout).catch(() => ''),
        ]);
        this.samples.push(...lists);
        this.rounds++;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#loop;
  }

  /** The values found in any sample (none, when nothing leaked). */
  leaked(secrets: string[]): string[] {
    const all = this.samples.join('\n');
    return secrets.filter((s) => s.length >= 8 && all.includes(s));
  }
}

/**
 * Waits until `cond` (shell) holds inside `machine` (polled every 20 ms, to
 * act at a precise moment of a running command); fails at once, with its
 * output, when the child ends first.
 */
export async function untilWhile(lab: Lab, machine: string, cond: string, c: ChildCli, timeoutMs = 120_000): Promise<void> {
  const ended = c.done.then((r) => {
    throw new Error(`the child k8s-ha ended (exit ${r.code ?? r.signal}) before \`${cond}\` held on ${machine}:\n${r.stdout}${r.stderr}`);
  });
  const seen = lab.exec(machine, ['sh', '-c', `until ${cond}; do sleep 0.02; done`], { timeoutMs });
  try {
    await Promise.race([seen, ended]);
  } catch (e) {
    c.child.kill('SIGKILL');
    throw e;
  }
  ended.catch(() => undefined);
}

export interface ChildCli {
  child: ChildProcess;
  /** Resolves with the exit code (or the signal's name) and the output. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** `k8s-ha ARGV -f FILE` as its own process (node + tsx), with HOME=cwd as the in-process runs have. */
export function spawnCli(argv: string[], file: string, cwd: string): ChildCli {
  // tsx resolved from the repository, not from cwd (a temp folder with no node_modules).
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(REPO, 'src/cli/main.ts'), ...argv, '-f', file], {
    cwd,
    env: { PATH: process.env.PATH, HOME: cwd },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => void (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => void (stderr += b.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((res) => {
    child.on('close', (code, signal) => res({ code, signal, stdout, stderr }));
  });
  return { child, done };
}
