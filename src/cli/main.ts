import { createInterface } from 'node:readline/promises';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HostError, InterruptedError, MultiHostError, UserError } from '../engine/errors.js';
import { PreflightError } from '../engine/engine.js';
import { HELP } from './help.js';
import { EXIT, maskedIO, processIO, type CliIO } from './io.js';
import { SecretSet } from '../util/secret.js';
import { formatProblems } from './output/plan.js';
import type { RunHooks } from './commands/plan.js';

export const VERSION = '0.1.0';

type Command = (argv: string[], io: CliIO, hooks: RunHooks) => Promise<number>;

/**
 * Each command's module is loaded when it runs: `--version` loads none,
 * `validate` no SSH, no Kubernetes client and no crypto (start-up time is
 * module loading; see bench/startup.ts).
 */
const COMMANDS: Record<string, Command> = {
  init: async (a, io) => (await import('./commands/init.js')).initCommand(a, io),
  validate: async (a, io) => (await import('./commands/validate.js')).validateCommand(a, io),
  schema: async (a, io) => (await import('./commands/validate.js')).schemaCommand(a, io),
  plan: async (a, io, h) => (await import('./commands/plan.js')).planCommand(a, io, h),
  apply: async (a, io, h) => (await import('./commands/plan.js')).applyCommand(a, io, h),
  kubeconfig: async (a, io, h) => (await import('./commands/kubeconfig.js')).kubeconfigCommand(a, io, h),
  verify: async (a, io, h) => (await import('./commands/verify.js')).verifyCommand(a, io, h),
  status: async (a, io, h) => (await import('./commands/status.js')).statusCommand(a, io, h),
  backup: async (a, io, h) => (await import('./commands/backup.js')).backupCommand(a, io, h),
  restore: async (a, io, h) => (await import('./commands/restore.js')).restoreCommand(a, io, h),
  reset: async (a, io, h) => (await import('./commands/reset.js')).resetCommand(a, io, h),
  node: async (a, io, h) => (await import('./commands/node.js')).nodeCommand(a, io, h),
  lab: async (a, io) => (await import('./lab.js')).labCommand(a, io),
  version: async (_argv, io) => (io.stdout(`k8s-ha ${VERSION}\n`), EXIT.ok),
};

/**
 * The whole CLI as a function: tests call it in-process with their own IO.
 * Returns the exit code; prints every error itself (no stack trace for
 * errors the user can fix).
 */
export async function main(argv: string[], rawIO: CliIO = processIO(), hooks: RunHooks = {}): Promise<number> {
  const io = maskedIO(rawIO, rawIO.secrets ?? new SecretSet());
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    const topic = name === 'help' ? rest[0] : undefined;
    io.stdout((topic && HELP[topic]) || HELP.main!);
    return EXIT.ok;
  }
  if (name === '--version' || name === '-V') return COMMANDS.version!([], io, hooks);
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.stderr(`k8s-ha: unknown command "${name}"; see \`k8s-ha --help\`\n`);
    return EXIT.usage;
  }
  try {
    return await cmd(rest, io, hooks);
  } catch (e) {
    return reportError(e, io);
  }
}

export function reportError(e: unknown, io: CliIO): number {
  if (e instanceof UserError) {
    io.stderr(`error: ${e.message}\n`);
    if (e.problems.length) io.stderr(formatProblems(e.problems, e.message.split(':')[0] ?? '') + '\n');
    return EXIT.usage;
  }
  if (e instanceof InterruptedError) {
    io.stderr(`${e.message}\n`);
    return EXIT.interrupted;
  }
  if (e instanceof PreflightError || e instanceof HostError || e instanceof MultiHostError) {
    io.stderr(`error: ${e.message}\n`);
    return EXIT.failed;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  io.stderr(`error: ${err.message}\n`);
  if (io.env.K8S_HA_DEBUG) io.stderr(`${err.stack}\n`);
  return EXIT.failed;
}

/** The real process: terminal prompts, Ctrl-C stops the apply between changes. */
export async function run(): Promise<void> {
  const io = processIO();
  // Output piped into `head` and closed early is not an error of ours.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  const controller = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    interrupts += 1;
    if (interrupts > 1) process.exit(EXIT.interrupted);
    process.stderr.write('\ninterrupt: finishing the current change, then stopping (Ctrl-C again to quit at once)\n');
    controller.abort();
  });
  // A question needs a person at the keyboard: standard input a terminal.
  // Output piped (`| tee log`) still asks, on stderr when stdout is no terminal.
  if (process.stdin.isTTY) {
    io.prompt = async (q) => {
      const rl = createInterface({ input: process.stdin, output: process.stdout.isTTY ? process.stdout : process.stderr });
      try {
        return await rl.question(q);
      } finally {
        rl.close();
      }
    };
  }
  process.exitCode = await main(process.argv.slice(2), io, { signal: controller.signal });
}

const isEntry = (() => {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();
if (isEntry) await run();
