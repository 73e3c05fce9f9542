import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { UserError } from '../../engine/errors.js';
import { starterClusterFile, type StarterAnswers } from '../../spec/starter.js';
import { parse } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';

const list = (s: string | undefined) => (s ? s.split(',').map((x) => x.trim()).filter(Boolean) : undefined);

/** `k8s-ha init`: asks on a terminal, takes flags (or defaults) otherwise. */
export async function initCommand(argv: string[], io: CliIO): Promise<number> {
  const { values } = parse('init', argv, {
    out: { type: 'string', short: 'o' },
    name: { type: 'string' },
    lb: { type: 'string' },
    servers: { type: 'string' },
    agents: { type: 'string' },
    pool: { type: 'string' },
    force: { type: 'boolean' },
  });
  if (values.help) return void io.stdout(HELP.init!), EXIT.ok;
  const out = resolve(io.cwd, values.out ?? 'cluster.yaml');
  if (existsSync(out) && !values.force) throw new UserError(`init: ${out} already exists; choose another --out or pass --force to overwrite it`);
  const ask = async (q: string, given: string | undefined, dflt: string): Promise<string> => {
    if (given !== undefined || !io.isTTY || !io.prompt) return given ?? dflt;
    const a = (await io.prompt(`${q} [${dflt}]: `)).trim();
    return a || dflt;
  };
  const answers: StarterAnswers = {
    name: await ask('Cluster name', values.name, 'home'),
    lbAddress: await ask('Load balancer + datastore host address', values.lb, '192.168.1.10'),
    servers: list(await ask('Server addresses (comma-separated)', values.servers, '192.168.1.11,192.168.1.12'))!,
    agents: list(await ask('Agent addresses (comma-separated)', values.agents, '192.168.1.21,192.168.1.22,192.168.1.23'))!,
    poolRange: await ask('MetalLB address range', values.pool, '192.168.1.200-192.168.1.220'),
  };
  await writeFile(out, starterClusterFile(answers), { mode: 0o644 });
  io.stdout(`Wrote ${out}. Next: edit it, then \`k8s-ha validate -f ${values.out ?? 'cluster.yaml'}\` and \`k8s-ha plan\`.\n`);
  return EXIT.ok;
}
