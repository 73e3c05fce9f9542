import { execFile, spawn } from 'node:child_process';

/** A local command failed: names the command, its exit code and the end of its stderr. */
export class RunError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly code: number | null,
    readonly stderr: string,
  ) {
    const tail = stderr.trim().split('\n').slice(-6).join('\n    ');
    super(`\`${argv.join(' ')}\` exited with ${code ?? 'a signal'}${tail ? `:\n    ${tail}` : ''}`);
    this.name = 'RunError';
  }
}

export interface RunOptions {
  /** Fed to standard input. */
  input?: string;
  /** Milliseconds before the command is killed. Default: 60000. */
  timeoutMs?: number;
  /** Return the result instead of throwing on a non-zero exit. Default: false. */
  allowFailure?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a local program from an argv array: no shell, so no value is ever
 * parsed as shell syntax. The lab's host-side commands all go through here.
 */
/** Root's tools live in sbin, which a sudo or CI PATH may lack. */
export function withSbin(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const path = env.PATH ?? '/usr/bin:/bin';
  const extra = ['/usr/local/sbin', '/usr/sbin', '/sbin'].filter((d) => !path.split(':').includes(d));
  return extra.length ? { ...env, PATH: [path, ...extra].join(':') } : env;
}

export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error('run: empty argv');
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: withSbin(opts.env ?? process.env) },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        if (err && typeof err.code === 'string') {
          // ENOENT and friends: the program itself is missing.
          reject(new RunError(argv, null, `${err.message}`));
          return;
        }
        const res = { code, stdout: String(stdout), stderr: String(stderr) };
        if (code !== 0 && !opts.allowFailure) reject(new RunError(argv, code, res.stderr || res.stdout));
        else resolve(res);
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/**
 * Runs a long local program with its output streamed line by line to `onLine`
 * (image builds take minutes; the user should see them move).
 */
export function runStreaming(
  argv: readonly string[],
  onLine: (line: string) => void,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<void> {
  const [file, ...args] = argv;
  if (!file) throw new Error('runStreaming: empty argv');
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: withSbin(opts.env ?? process.env) });
    const tail: string[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30 * 60_000);
    const feed = (buf: Buffer): void => {
      for (const line of buf.toString().split('\n')) {
        if (!line.trim()) continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        onLine(line);
      }
    };
    child.stdout.on('data', feed);
    child.stderr.on('data', feed);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new RunError(argv, null, e.message));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new RunError(argv, code, tail.join('\n')));
    });
  });
}
