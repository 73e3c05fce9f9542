import { setTimeout as wait } from 'node:timers/promises';
import { collectStatus, type StatusOptions } from '../../status/collect.js';
import { degradations, formatStatus, statusToJSON } from '../../status/model.js';
import { clusterFileArg, intFlag, parse } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import { openCluster, type RunHooks } from '../open.js';

/** Tests stop --watch after some rounds and fix the clock. */
export interface StatusHooks extends RunHooks {
  status?: Pick<StatusOptions, 'now'> & { sleep?: (ms: number) => Promise<void>; rounds?: number };
}

/** Clear the terminal and move to the top: a redraw in place. */
const CLEAR = '\x1b[H\x1b[2J';

export async function statusCommand(argv: string[], io: CliIO, hooks: StatusHooks = {}): Promise<number> {
  const { values } = parse('status', argv, {
    file: { type: 'string', short: 'f' },
    json: { type: 'boolean' },
    watch: { type: 'string', short: 'w' },
    'accept-new-host-key': { type: 'string', multiple: true },
  });
  if (values.help) return void io.stdout(HELP.status!), EXIT.ok;
  const every = intFlag('status', 'watch', values.watch, 1, 3600);
  const file = clusterFileArg(values.file, io.env, io.cwd);
  const run = await openCluster(file, io, hooks, { readOnly: true, acceptNewHostKey: values['accept-new-host-key'] ?? [] });
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
