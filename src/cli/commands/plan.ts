import type { EventSink } from '../../engine/events.js';
import { openCluster, type RunHooks } from '../open.js';
import { clusterFileArg, intFlag, parse, shownPath } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import { countChanges, formatPlan, formatProblems, planToJSON } from '../output/plan.js';
import { jsonEvents, plainEvents, terminalEvents, warningEvents } from '../output/progress.js';
import { reportToJSON } from '../../verify/report.js';
import { verifyOpened, type VerifyHooks } from './verify.js';

const common = {
  file: { type: 'string', short: 'f' },
  json: { type: 'boolean' },
  concurrency: { type: 'string' },
  'accept-new-host-key': { type: 'string', multiple: true },
  verbose: { type: 'boolean', short: 'v' },
  // Upgrades (k3s.version changed): the same flags for plan and apply, so the plan shows what apply does.
  force: { type: 'boolean' },
  'delete-emptydir-data': { type: 'boolean' },
  'drain-timeout': { type: 'string' },
} as const;

export type { RunHooks };

type CommonValues = { concurrency?: string; 'accept-new-host-key'?: string[]; force?: boolean; 'delete-emptydir-data'?: boolean; 'drain-timeout'?: string };

function openFor(cmd: string, file: string, values: CommonValues, io: CliIO, events: EventSink, hooks: RunHooks) {
  const drainTimeoutS = intFlag(cmd, 'drain-timeout', values['drain-timeout'], 10, 86_400);
  return openCluster(file, io, hooks, {
    events,
    concurrency: intFlag(cmd, 'concurrency', values.concurrency, 1, 100),
    acceptNewHostKey: values['accept-new-host-key'] ?? [],
    run: { force: values.force ?? false, deleteEmptyDirData: values['delete-emptydir-data'] ?? false, ...(drainTimeoutS !== undefined ? { drainTimeoutS } : {}) },
  });
}

function eventSink(io: CliIO, json: boolean | undefined, verbose: boolean | undefined): EventSink {
  if (json) return jsonEvents(io.stderr);
  return io.isTTY ? terminalEvents(io.stdout) : plainEvents(io.stdout, verbose);
}

export async function planCommand(argv: string[], io: CliIO, hooks: RunHooks = {}): Promise<number> {
  const { values, positionals } = parse('plan', argv, { ...common, 'detailed-exitcode': { type: 'boolean' } }, true);
  if (values.help) return void io.stdout(HELP.plan!), EXIT.ok;
  const file = clusterFileArg(values.file, io.env, io.cwd, positionals, 'plan');
  // Progress of a plan is not shown, but its warnings are (load, token adoption).
  const run = await openFor('plan', file, values, io, values.json ? jsonEvents(io.stderr) : warningEvents(io.stderr), hooks);
  try {
    const plan = await run.plan();
    if (values.json) io.stdout(JSON.stringify(planToJSON(plan), null, 2) + '\n');
    else io.stdout(formatPlan(plan, { color: io.isTTY }));
    if (plan.problems.some((p) => p.severity === 'error')) return EXIT.failed;
    return values['detailed-exitcode'] && !plan.empty ? EXIT.changes : EXIT.ok;
  } finally {
    await run.close();
  }
}

export async function applyCommand(argv: string[], io: CliIO, hooks: VerifyHooks = {}): Promise<number> {
  const { values, positionals } = parse('apply', argv, { ...common, yes: { type: 'boolean', short: 'y' }, 'no-verify': { type: 'boolean' }, 'break-lock': { type: 'boolean' } }, true);
  if (values.help) return void io.stdout(HELP.apply!), EXIT.ok;
  const file = clusterFileArg(values.file, io.env, io.cwd, positionals, 'apply');
  const run = await openFor('apply', file, values, io, eventSink(io, values.json, values.verbose), hooks);
  try {
    const plan = await run.plan();
    const pre = plan.problems.filter((p) => p.severity === 'error');
    if (pre.length) {
      io.stderr(formatProblems(pre, shownPath(io.cwd, file)) + '\n');
      return EXIT.failed;
    }
    if (plan.empty) {
      if (!values.json) io.stdout('No changes. Every host matches the cluster file.\n');
      // `k8s-ha verify` at the end of every apply, unless --no-verify (PRODUCT.md).
      const v = values['no-verify'] ? null : await verifyOpened(run, { json: values.json }, io, hooks);
      if (values.json) io.stdout(JSON.stringify({ changed: 0, state: run.state.path, ...(v ? { verify: reportToJSON(v.report) } : {}) }) + '\n');
      return v?.code ?? EXIT.ok;
    }
    if (!values.json) io.stdout(formatPlan(plan, { color: io.isTTY }));
    if (!values.yes && io.prompt) {
      const answer = (await io.prompt(`Apply ${countChanges(plan.steps)} changes? [y/N] `)).trim().toLowerCase();
      if (answer !== 'y' && answer !== 'yes') {
        io.stdout('Nothing changed.\n');
        return EXIT.ok;
      }
    }
    // The plan just shown, not a new one: work it did not list stops the apply (PlanChangedError).
    const result = await run.apply(plan, { breakLock: values['break-lock'] ?? false });
    if (!values.json) io.stdout(`Applied ${result.changed} change${result.changed === 1 ? '' : 's'} in ${(result.ms / 1000).toFixed(1)} s. Secrets and host keys: ${shownPath(io.cwd, run.state.path)} (mode 0600).\n`);
    const v = values['no-verify'] ? null : await verifyOpened(run, { json: values.json }, io, hooks);
    if (values.json) io.stdout(JSON.stringify({ changed: result.changed, ms: result.ms, state: run.state.path, ...(v ? { verify: reportToJSON(v.report) } : {}) }) + '\n');
    return v?.code ?? EXIT.ok;
  } finally {
    await run.close();
  }
}
