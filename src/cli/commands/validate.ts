import { loadClusterFile } from '../../spec/load.js';
import { clusterJsonSchema } from '../../spec/schema.js';
import { clusterFileArg, parse, shownPath } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import { formatProblems } from '../output/plan.js';

export async function validateCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse('validate', argv, { file: { type: 'string', short: 'f' }, json: { type: 'boolean' } }, true);
  if (values.help) return void io.stdout(HELP.validate!), EXIT.ok;
  const file = clusterFileArg(values.file, io.env, io.cwd, positionals, 'validate');
  const r = loadClusterFile(file, io.env);
  const errors = r.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = r.diagnostics.length - errors;
  const shown = shownPath(io.cwd, file);
  if (values.json) {
    io.stdout(JSON.stringify({ file: shown, valid: errors === 0, errors, warnings, problems: r.diagnostics }, null, 2) + '\n');
  } else if (r.diagnostics.length === 0) {
    io.stdout(`${shown}: valid (${r.cluster!.hosts.length} hosts, API at ${r.cluster!.apiServerUrl})\n`);
  } else {
    (errors ? io.stderr : io.stdout)(formatProblems(r.diagnostics, shown) + '\n');
    (errors ? io.stderr : io.stdout)(`${shown}: ${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}\n`);
  }
  return errors ? EXIT.usage : EXIT.ok;
}

export async function schemaCommand(argv: string[], io: CliIO): Promise<number> {
  const { values } = parse('schema', argv, {});
  if (values.help) return void io.stdout(HELP.schema!), EXIT.ok;
  io.stdout(JSON.stringify(clusterJsonSchema(), null, 2) + '\n');
  return EXIT.ok;
}
