import { UserError } from '../../engine/errors.js';
import { removalPipeline } from '../../cluster/pipelines.js';
import { openCluster, type RunHooks } from '../open.js';
import { clusterFileArg, intFlag, parse, shownPath } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import { countChanges, formatPlan, formatProblems, planToJSON } from '../output/plan.js';
import { jsonEvents, plainEvents, terminalEvents } from '../output/progress.js';

/**
 * `k8s-ha node remove NAME`: the removal pipeline (cluster/pipelines.ts)
 * for one host, as `remove: true` on it would run inside apply.
 */
export async function nodeCommand(argv: string[], io: CliIO, hooks: RunHooks = {}): Promise<number> {
  const { values, positionals } = parse(
    'node',
    argv,
    {
      file: { type: 'string', short: 'f' },
      yes: { type: 'boolean', short: 'y' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
      force: { type: 'boolean' },
      'delete-emptydir-data': { type: 'boolean' },
      'drain-timeout': { type: 'string' },
      'break-lock': { type: 'boolean' },
      'accept-new-host-key': { type: 'string', multiple: true },
    },
    true,
  );
  if (values.help || positionals.length === 0) return void io.stdout(HELP.node!), values.help ? EXIT.ok : EXIT.usage;
  const [verb, name, ...rest] = positionals;
  if (verb !== 'remove') throw new UserError(`node: unknown subcommand "${verb}"; the one there is: node remove NAME (see \`k8s-ha node --help\`)`);
  if (!name) throw new UserError('node remove: which host? give its name: k8s-ha node remove NAME');
  if (rest.length) throw new UserError(`node remove: one host at a time, not ${[name, ...rest].join(' ')}; give the cluster file with -f`);
  const file = clusterFileArg(values.file, io.env, io.cwd, [], 'node');
  const interactive = !!io.prompt;
  if (!values.yes && !values['dry-run'] && !interactive) {
    throw new UserError(`node remove: drains ${name} and uninstalls k3s there; off a terminal it asks nothing, so say so with --yes (or see what it would do with --dry-run)`);
  }
  const drainTimeoutS = intFlag('node', 'drain-timeout', values['drain-timeout'], 10, 86_400);
  const events = values.json ? jsonEvents(io.stderr) : io.isTTY ? terminalEvents(io.stdout) : plainEvents(io.stdout, false);
  const run = await openCluster(file, io, { ...hooks, open: { phases: removalPipeline(), ...hooks.open } }, {
    events,
    acceptNewHostKey: values['accept-new-host-key'] ?? [],
    run: { force: values.force ?? false, deleteEmptyDirData: values['delete-emptydir-data'] ?? false, ...(drainTimeoutS !== undefined ? { drainTimeoutS } : {}) },
    remove: [name],
  });
  try {
    const plan = await run.plan();
    const pre = plan.problems.filter((p) => p.severity === 'error');
    if (values.json) io.stdout(JSON.stringify(planToJSON(plan)) + '\n');
    else io.stdout(plan.empty ? `Nothing to do: ${name} is not part of the cluster any more.\n` : formatPlan(plan, { color: io.isTTY }));
    if (pre.length) {
      io.stderr(formatProblems(pre, shownPath(io.cwd, file)) + '\n');
      return EXIT.failed;
    }
    if (plan.unreachable?.length) {
      io.stderr(`error: ${plan.unreachable.map((u) => `${u.host} (${u.reason})`).join(', ')} could not be reached; nothing was changed\n`);
      return EXIT.failed;
    }
    if (values['dry-run'] || plan.empty) return EXIT.ok;
    if (!values.yes) {
      const a = (await io.prompt!(`Remove ${name} from cluster ${run.deployment.spec.name}: ${countChanges(plan.steps)} changes. Go on? [y/N] `)).trim().toLowerCase();
      if (a !== 'y' && a !== 'yes') return void io.stdout('Nothing changed.\n'), EXIT.ok;
    }
    const result = await run.apply(plan, { command: `node remove ${name}`, breakLock: values['break-lock'] ?? false });
    if (values.json) io.stdout(JSON.stringify({ removed: name, changed: result.changed, ms: result.ms }) + '\n');
    else io.stdout(`Removed ${name}: ${result.changed} changes in ${(result.ms / 1000).toFixed(1)} s. Now delete ${name} from ${shownPath(io.cwd, file)} (or leave it there with remove: true).\n`);
    return EXIT.ok;
  } finally {
    await run.close();
  }
}
