import { setTimeout as wait } from 'node:timers/promises';
import { collectStatus, type StatusOptions } from '../../status/collect.js';
import { degradations, formatStatus, statusToJSON } from '../../status/model.js';
import { checkListen, isLoopback, parseListen, StatusServer, type ServeOptions } from '../../status/serve.js';
import { UserError } from '../../engine/errors.js';
import { clusterFileArg, intFlag, parse } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import type { ClusterRun } from '../../cluster/open.js';
import { openCluster, type RunHooks } from '../open.js';

/** Tests stop --watch after some rounds and fix the clock. */
export interface StatusHooks extends RunHooks {
  status?: Pick<StatusOptions, 'now'> & { sleep?: (ms: number) => Promise<void>; rounds?: number };
  /** --serve: told the server once it listens (tests open the page, then abort the signal). */
  serve?: Partial<Pick<ServeOptions, 'timeoutMs' | 'refreshMs' | 'maxClients' | 'onRound'>> & { listening?: (s: StatusServer) => void };
}

/** Where `--serve` alone listens: loopback only (the page shows the cluster's topology). */
export const DEFAULT_LISTEN = '127.0.0.1:8440';

/** `--serve` takes an optional value: alone (or before another flag) it means DEFAULT_LISTEN. */
function serveDefault(argv: string[]): string[] {
  return argv.flatMap((a, i) => (a === '--serve' && (i === argv.length - 1 || argv[i + 1]!.startsWith('-')) ? [`--serve=${DEFAULT_LISTEN}`] : [a]));
}

/** Clear the terminal and move to the top: a redraw in place. */
const CLEAR = '\x1b[H\x1b[2J';

export async function statusCommand(argv: string[], io: CliIO, hooks: StatusHooks = {}): Promise<number> {
  const { values, positionals } = parse('status', serveDefault(argv), {
    file: { type: 'string', short: 'f' },
    json: { type: 'boolean' },
    watch: { type: 'string', short: 'w' },
    serve: { type: 'string' },
    'allow-remote': { type: 'boolean' },
    timeout: { type: 'string' },
    'accept-new-host-key': { type: 'string', multiple: true },
  }, true);
  if (values.help) return void io.stdout(HELP.status!), EXIT.ok;
  const every = intFlag('status', 'watch', values.watch, 1, 3600);
  const timeout = intFlag('status', 'timeout', values.timeout, 1, 600);
  const listen = values.serve !== undefined ? parseListen(values.serve) : null;
  if (!listen && (values['allow-remote'] || timeout !== undefined)) throw new UserError(`status: --${values['allow-remote'] ? 'allow-remote' : 'timeout'} only goes with --serve`);
  if (listen && values.json) throw new UserError('status: --serve and --json do not go together; the page serves the same JSON at /status.json');
  if (listen) checkListen(listen.host, listen.port, values['allow-remote'] === true);
  const file = clusterFileArg(values.file, io.env, io.cwd, positionals, 'status');
  const run = await openCluster(file, io, hooks, { readOnly: true, acceptNewHostKey: values['accept-new-host-key'] ?? [] });
  if (listen) {
    try {
      return await serve(run, listen, { every, timeout, allowRemote: values['allow-remote'] === true }, io, hooks);
    } finally {
      await run.close();
    }
  }
  // Ctrl-C ends the wait at once, not after the next refresh.
  const sleep = hooks.status?.sleep ?? ((ms: number) => wait(ms, undefined, hooks.signal ? { signal: hooks.signal } : {}).catch(() => undefined));
  try {
    let code: number = EXIT.ok;
    for (let round = 1; ; round++) {
      const snap = await collectStatus({ deployment: run.deployment, host: (n) => run.engine.host(n), ...(hooks.status?.now ? { now: hooks.status.now } : {}) });
      code = degradations(snap).length ? EXIT.failed : EXIT.ok;
      if (values.json) io.stdout(JSON.stringify(statusToJSON(snap), null, every ? 0 : 2) + '\n');
      else if (every && io.isTTY) io.stdout(CLEAR + formatStatus(snap, { color: true }) + `\nRefreshing every ${every} s; Ctrl-C to stop.\n`);
      else io.stdout((round > 1 ? '\n' : '') + formatStatus(snap, { color: io.isTTY }));
      if (!every || hooks.signal?.aborted || (hooks.status?.rounds !== undefined && round >= hooks.status.rounds)) break;
      await sleep(every * 1000);
      if (hooks.signal?.aborted) break;
    }
    // --watch ends on Ctrl-C: the exit code says how the last screen looked.
    return code;
  } finally {
    await run.close();
  }
}

/**
 * The live page until Ctrl-C. One run (one connection per host, reconnected
 * by the transport when lost) for the whole life of the server; shorter
 * per-host bounds than the one-shot screen, so a frozen host shows as down
 * within seconds instead of holding each refresh.
 */
async function serve(run: ClusterRun, at: { host: string; port: number }, o: { every?: number; timeout?: number; allowRemote: boolean }, io: CliIO, hooks: StatusHooks): Promise<number> {
  const c = run.deployment.spec;
  const refreshMs = hooks.serve?.refreshMs ?? (o.every ?? 2) * 1000;
  const server = await StatusServer.start({
    host: at.host,
    port: at.port,
    allowRemote: o.allowRemote,
    refreshMs,
    timeoutMs: hooks.serve?.timeoutMs ?? (o.timeout ?? 10) * 1000,
    ...(hooks.serve?.maxClients ? { maxClients: hooks.serve.maxClients } : {}),
    ...(hooks.serve?.onRound ? { onRound: hooks.serve.onRound } : {}),
    context: { desired: { ...(c.k3s.version ? { k3s: c.k3s.version } : {}), ...(c.metallb ? { metallb: c.metallb.version } : {}) } },
    collect: () => collectStatus({ deployment: run.deployment, host: (n) => run.engine.host(n), timeouts: { hostMs: 2000, probeMs: 2000 }, ...(hooks.status?.now ? { now: hooks.status.now } : {}) }),
  });
  if (!isLoopback(at.host)) io.stderr(`warning: the status page on ${at.host}:${at.port} shows the cluster's topology (host names, addresses, versions, problems) to anyone who can reach that address; it has no login. Prefer 127.0.0.1 and an SSH tunnel (ssh -L ${at.port}:127.0.0.1:${at.port} THIS-HOST).\n`);
  io.stdout(`Status page of ${c.name}: ${server.url} (read-only; refresh every ${refreshMs / 1000} s; Ctrl-C to stop)\n`);
  hooks.serve?.listening?.(server);
  try {
    if (hooks.signal && !hooks.signal.aborted) await new Promise<void>((resolve) => hooks.signal!.addEventListener('abort', () => resolve(), { once: true }));
    else if (!hooks.signal) await new Promise<never>(() => undefined);
  } finally {
    await server.close();
  }
  return EXIT.ok;
}
