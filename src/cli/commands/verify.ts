import type { ClusterRun } from '../../cluster/open.js';
import { formatCheck, formatReport, reportToJSON, type VerifyReport } from '../../verify/report.js';
import { runVerify, type VerifyOptions } from '../../verify/run.js';
import { clusterFileArg, parse } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import { openCluster, type RunHooks } from '../open.js';

/** Tests shorten the waits and answer the HTTP check; library users may too. */
export interface VerifyHooks extends RunHooks {
  verify?: Pick<VerifyOptions, 'httpGet' | 'timeouts' | 'pollMs' | 'sleep'>;
}

export interface VerifyFlags {
  drill?: boolean;
  image?: string;
  json?: boolean;
}

/**
 * Verify an opened cluster and print the report. Shared by `verify` and the
 * end of `apply`; returns the exit code (1 when a check failed).
 */
export async function verifyOpened(run: ClusterRun, flags: VerifyFlags, io: CliIO, hooks: VerifyHooks): Promise<{ code: number; report: VerifyReport }> {
  if (!flags.json) io.stdout(`Verifying cluster ${run.deployment.spec.name}${flags.drill ? ' (with the server drill: each server is stopped in turn)' : ''}...\n`);
  const report = await runVerify({
    deployment: run.deployment,
    host: (name) => run.engine.host(name),
    drill: flags.drill ?? false,
    ...(flags.image ? { image: flags.image } : {}),
    ...(flags.json ? {} : { onCheck: (c) => io.stdout(formatCheck(c, { color: io.isTTY }) + '\n') }),
    ...(hooks.signal ? { signal: hooks.signal } : {}),
    ...hooks.verify,
  });
  if (!flags.json) {
    // The checks were printed as they finished; the summary is the report's last line.
    io.stdout('\n' + (formatReport(report, { color: io.isTTY }).split('\n\n').pop() ?? ''));
  }
  return { code: report.ok ? EXIT.ok : EXIT.failed, report };
}

export async function verifyCommand(argv: string[], io: CliIO, hooks: VerifyHooks = {}): Promise<number> {
  const { values, positionals } = parse('verify', argv, {
    file: { type: 'string', short: 'f' },
    json: { type: 'boolean' },
    drill: { type: 'boolean' },
    image: { type: 'string' },
    'accept-new-host-key': { type: 'string', multiple: true },
  }, true);
  if (values.help) return void io.stdout(HELP.verify!), EXIT.ok;
  const file = clusterFileArg(values.file, io.env, io.cwd, positionals, 'verify');
  const run = await openCluster(file, io, hooks, { readOnly: true, acceptNewHostKey: values['accept-new-host-key'] ?? [] });
  try {
    const { code, report } = await verifyOpened(run, { drill: values.drill, image: values.image, json: values.json }, io, hooks);
    if (values.json) io.stdout(JSON.stringify(reportToJSON(report), null, 2) + '\n');
    return code;
  } finally {
    await run.close();
  }
}
