import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { UserError } from '../../engine/errors.js';
import { parseCluster } from '../../spec/load.js';
import { starterClusterFile, type StarterAnswers } from '../../spec/starter.js';
import { parse } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';

const list = (s: string): string[] => s.split(',').map((x) => x.trim()).filter(Boolean);

/** The flag (or question) an answer came from, for a problem at `path` of the file it makes. */
function flagOf(path: string, a: StarterAnswers): string {
  const host = /^hosts\[(\d+)\]/.exec(path);
  if (host) {
    const i = Number(host[1]);
    if (i === 0) return `--lb ${a.lbAddress}`;
    if (i <= a.servers.length) return `--servers (${a.servers[i - 1]})`;
    return `--agents (${a.agents[i - 1 - a.servers.length]})`;
  }
  if (path === 'name') return '--name';
  if (path.startsWith('metallb')) return '--pool';
  return path || 'the answers';
}

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
    if (given !== undefined || !io.prompt) return given ?? dflt;
    const a = (await io.prompt(`${q} [${dflt}]: `)).trim();
    return a || dflt;
  };
  const name = (await ask('Cluster name', values.name, 'home')).trim();
  const lbAddress = (await ask('Load balancer + datastore host address', values.lb, '192.168.1.10')).trim();
  const servers = list(await ask('Server addresses (comma-separated)', values.servers, '192.168.1.11,192.168.1.12'));
  const agents = list(await ask('Agent addresses (comma-separated)', values.agents, '192.168.1.21,192.168.1.22,192.168.1.23'));
  const pool = (await ask('MetalLB address range', values.pool, '192.168.1.200-192.168.1.220')).trim();
  const answers: StarterAnswers = { name, lbAddress, servers, agents, ...(pool ? { poolRange: pool } : {}) };
  if (answers.servers.length === 0) throw new UserError('init: --servers names no address; give one or more, comma-separated (e.g. --servers 192.168.1.11,192.168.1.12); nothing was written');
  // What init writes must pass validate: check it before it is written.
  const text = starterClusterFile(answers);
  const problems = parseCluster(text, out, io.env).diagnostics.filter((d) => d.severity === 'error');
  if (problems.length) {
    const lines = problems.map((d) => `  ${flagOf(d.path, answers)}: ${d.message}${d.hint ? `\n    fix: ${d.hint}` : ''}`);
    throw new UserError(`init: these answers make a cluster file that would not validate; nothing was written:\n${lines.join('\n')}`);
  }
  await writeFile(out, text, { mode: 0o644 });
  io.stdout(`Wrote ${out}. Next: edit it, then \`k8s-ha validate -f ${values.out ?? 'cluster.yaml'}\` and \`k8s-ha plan\`.\n`);
  return EXIT.ok;
}
