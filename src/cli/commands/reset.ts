import { rm } from 'node:fs/promises';
import { UserError } from '../../engine/errors.js';
import { ClusterRun, loadCluster } from '../../cluster/open.js';
import { resetPipeline } from '../../phases/reset.js';
import { clusterFileArg, parse, shownPath } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import { countChanges, formatPlan, formatProblems } from '../output/plan.js';
import { jsonEvents, plainEvents, terminalEvents } from '../output/progress.js';
import type { RunHooks } from './plan.js';

export async function resetCommand(argv: string[], io: CliIO, hooks: RunHooks = {}): Promise<number> {
  const { values, positionals } = parse('reset', argv, {
    file: { type: 'string', short: 'f' },
    loadbalancer: { type: 'boolean' },
    datastore: { type: 'boolean' },
    forget: { type: 'boolean' },
    yes: { type: 'boolean', short: 'y' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
    'accept-new-host-key': { type: 'string', multiple: true },
  }, true);
  if (values.help) return void io.stdout(HELP.reset!), EXIT.ok;
  const file = clusterFileArg(values.file, io.env, io.cwd, positionals, 'reset');
  const { cluster } = loadCluster(file, io.env);
  // A person at the keyboard: standard input a terminal (output may be piped).
  const interactive = !!io.prompt;
  if (!values.yes && !values['dry-run'] && !interactive) {
    throw new UserError(`reset: uninstalls k3s from every node${values.datastore ? ' and drops the datastore' : ''}; off a terminal it asks nothing, so say so with --yes (or see what it would do with --dry-run)`);
  }
  const events = values.json ? jsonEvents(io.stderr) : io.isTTY ? terminalEvents(io.stdout) : plainEvents(io.stdout, false);
  const run = await ClusterRun.open(file, {
    env: io.env,
    secrets: io.secrets,
    acceptHostKeyFor: new Set(values['accept-new-host-key'] ?? []),
    events,
    signal: hooks.signal,
    ...hooks.open,
    phases: resetPipeline({ loadBalancer: !!values.loadbalancer, datastore: !!values.datastore }),
  });
  let done = false;
  try {
    const plan = await run.plan();
    const pre = plan.problems.filter((p) => p.severity === 'error');
    if (!values.json) io.stdout(plan.empty ? 'Nothing to reset: no host has anything k8s-ha would remove.\n' : formatPlan(plan, { color: io.isTTY }));
    if (pre.length) {
      io.stderr(formatProblems(pre, shownPath(io.cwd, file)) + '\n');
      return EXIT.failed;
    }
    if (values['dry-run']) return EXIT.ok;
    if (!values.yes && !plan.empty) {
      if (values.datastore) {
        const a = (await io.prompt!(`This drops database ${cluster.datastore.database} of cluster ${cluster.name}: every object in it is lost. Type the cluster's name to go on: `)).trim();
        if (a !== cluster.name) return void io.stdout('Nothing changed.\n'), EXIT.ok;
      } else {
        const a = (await io.prompt!(`Reset: ${countChanges(plan.steps)} changes (the datastore is kept). Go on? [y/N] `)).trim().toLowerCase();
        if (a !== 'y' && a !== 'yes') return void io.stdout('Nothing changed.\n'), EXIT.ok;
      }
    }
    // The plan shown, under the cluster lock.
    const result = plan.empty ? { changed: 0, ms: 0 } : await run.apply(plan, { command: 'reset' });
    done = true;
    if (values.json) io.stdout(JSON.stringify({ changed: result.changed, ms: result.ms, forgot: !!values.forget }) + '\n');
    else io.stdout(`Reset ${cluster.name}: ${result.changed} changes in ${(result.ms / 1000).toFixed(1)} s.${values.datastore ? '' : ' The datastore was kept: `k8s-ha apply` builds the cluster again on it.'}\n`);
    return EXIT.ok;
  } finally {
    await run.close();
    if (done && values.forget) {
      await rm(run.state.path, { force: true });
      if (!values.json) io.stdout(`Removed ${shownPath(io.cwd, run.state.path)} (--forget).\n`);
    }
  }
}
