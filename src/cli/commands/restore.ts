import { resolve } from 'node:path';
import { UserError } from '../../engine/errors.js';
import { openRestore } from '../../backup/restore.js';
import { clusterFileArg, parse, shownPath } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import { formatPlan, formatProblems } from '../output/plan.js';
import { jsonEvents, plainEvents, terminalEvents } from '../output/progress.js';
import { decryptWithFromFlags, keyFlags } from '../keys.js';
import { verifyOpened, type VerifyHooks } from './verify.js';
import { reportToJSON } from '../../verify/report.js';

export async function restoreCommand(argv: string[], io: CliIO, hooks: VerifyHooks = {}): Promise<number> {
  const { values, positionals } = parse(
    'restore',
    argv,
    {
      file: { type: 'string', short: 'f' },
      yes: { type: 'boolean', short: 'y' },
      'dry-run': { type: 'boolean' },
      'no-verify': { type: 'boolean' },
      'break-lock': { type: 'boolean' },
      json: { type: 'boolean' },
      'accept-new-host-key': { type: 'string', multiple: true },
      ...keyFlags,
    },
    true,
  );
  if (values.help) return void io.stdout(HELP.restore!), EXIT.ok;
  if (positionals.length !== 1) throw new UserError('restore: name one backup archive: k8s-ha restore FILE (`k8s-ha backup --list` shows them)');
  const archive = resolve(io.cwd, positionals[0]!);
  const file = clusterFileArg(values.file, io.env, io.cwd);
  // A person at the keyboard: standard input a terminal (output may be piped).
  const interactive = !!io.prompt;
  if (!values.yes && !values['dry-run'] && !interactive) {
    throw new UserError('restore: replaces the cluster\'s datastore and restarts every node; off a terminal it asks nothing, so say so with --yes (or see what it would do with --dry-run)');
  }
  const key = await decryptWithFromFlags('restore', values, io.env, io.cwd);
  const events = values.json ? jsonEvents(io.stderr) : io.isTTY ? terminalEvents(io.stdout) : plainEvents(io.stdout, false);
  const opened = await openRestore(file, archive, key, { env: io.env, secrets: io.secrets, acceptHostKeyFor: new Set(values['accept-new-host-key'] ?? []), events, signal: hooks.signal, ...hooks.open });
  const { run, job } = opened;
  let applied = false;
  try {
    const plan = await run.plan();
    const m = job.source.manifest;
    const header =
      `Restore ${shownPath(io.cwd, archive)}: cluster ${m.cluster}, taken ${m.createdAt}, k3s ${m.k3sVersion}, ${job.source.facts.rows} kine rows up to revision ${m.kineRevision}.\n` +
      (opened.stateChanges.length ? `State file ${shownPath(io.cwd, run.state.path)}: ${opened.stateChanges.join('; ')}.\n` : '');
    const pre = plan.problems.filter((p) => p.severity === 'error');
    if (!values.json) io.stdout(header + formatPlan(plan, { color: io.isTTY }));
    if (pre.length) {
      io.stderr(formatProblems(pre, shownPath(io.cwd, file)) + '\n');
      return EXIT.failed;
    }
    if (values['dry-run']) return EXIT.ok;
    if (!values.yes) {
      const answer = (await io.prompt!(`This replaces the data of cluster ${m.cluster} with the backup's. Type the cluster's name to restore: `)).trim();
      if (answer !== m.cluster) {
        io.stdout('Nothing changed.\n');
        return EXIT.ok;
      }
    }
    applied = true;
    // The plan shown, under the cluster lock: never at once with an apply.
    const result = await run.apply(plan, { command: 'restore', breakLock: !!values['break-lock'] });
    if (!values.json) io.stdout(`Restored ${m.cluster} from ${shownPath(io.cwd, archive)} in ${(result.ms / 1000).toFixed(1)} s; the next kine revision is above ${job.revision ?? '?'}.\n`);
    const v = values['no-verify'] ? null : await verifyOpened(run, { json: values.json }, io, hooks);
    if (values.json) io.stdout(JSON.stringify({ restored: archive, revision: job.revision, loadMs: job.loadMs, ms: result.ms, ...(v ? { verify: reportToJSON(v.report) } : {}) }) + '\n');
    return v?.code ?? EXIT.ok;
  } finally {
    await run.close();
    if (!applied) await opened.revertState();
  }
}
