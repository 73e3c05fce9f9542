import { spawn } from 'node:child_process';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EXIT, type CliIO } from './io.js';
import { sh } from '../transport/quote.js';
import { DEFAULT_LAB, LabUsageError, labDown, labUp, listLabs, openLab, type Lab, type LabOptions } from '../../lab/index.js';
import { cacheDir as imageCacheRoot, ensureImage } from '../../lab/image.js';
import { labComponents } from '../../lab/components.js';
import { join } from 'node:path';
import { checkRequirements } from '../../lab/requirements.js';

export const LAB_HELP = `k8s-ha lab: real local machines (Debian 12, systemd, sshd) for the whole topology

Usage:
  k8s-ha lab up [--servers N] [--agents N] [--lb2 | --galera] [--subnet CIDR] [--name LAB] [--out FILE] [--bare MACHINE=PKG,...]
  k8s-ha lab status [--name LAB] [--json]
  k8s-ha lab ssh MACHINE [-- COMMAND...]
  k8s-ha lab stop MACHINE [--hard]     power off (clean; --hard kills its init)
  k8s-ha lab start MACHINE
  k8s-ha lab freeze MACHINE            stop every process: connections stay open, nothing answers
  k8s-ha lab thaw MACHINE
  k8s-ha lab cut MACHINE               take its network link down
  k8s-ha lab heal MACHINE
  k8s-ha lab recreate MACHINE          re-install it: empty disk, new SSH host key, same name and address
  k8s-ha lab down [--name LAB]         remove every machine, mount, link, rule, process and file
  k8s-ha lab image                     build (or find) the cached machine image

\`up\` makes the seed topology by default: infra (load balancer + datastore),
server1-2, agent1-3; --lb2 adds a second load balancer and a virtual IP.
--galera makes the topology where any one machine can die: infra1 and infra2,
each an HAProxy load balancer and a Galera data node, the virtual IP between
them, and the Galera arbitrator on agent1. It
writes a cluster file for the lab (--out FILE, default in the lab folder).
The image is built once with debootstrap (75-120 s) and cached in
/var/cache/k8s-ha-lab; labs live in /var/lib/k8s-ha-lab/LAB.

The lab's cluster file installs the lab's k3s (labk3s/, when built: a test
double of k3s made from the upstream Kubernetes parts, running real
kubelets, kube-proxy, flannel and containerd), the lab's images through
k8s-ha's air-gap images path (labk3s/images/, no registry is reachable),
and MetalLB's release manifest as published, from the Go module proxy.

\`status\` exits 1 when a machine is stopped, frozen, cut or not answering.
Exit codes: 0 done, 1 an operation failed, 2 bad input or the host cannot run
labs (not root, a tool missing: the message gives the apt-get command).

Needs root, systemd-container, debootstrap, iproute2, nftables.

Examples:
  sudo k8s-ha lab up
  sudo k8s-ha lab ssh server1 -- systemctl is-system-running
  sudo k8s-ha lab up --name ha --lb2 --servers 3 --agents 0 --subnet 10.214.0.0/24
  sudo k8s-ha lab down
`;

const MACHINE_COMMANDS = ['stop', 'start', 'freeze', 'thaw', 'cut', 'heal', 'recreate'] as const;
type MachineCommand = (typeof MACHINE_COMMANDS)[number];

/** `k8s-ha lab ...`: returns the exit code; prints every error itself. */
export async function labCommand(argv: string[], io: CliIO): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    if (e instanceof LabUsageError) {
      io.stderr(`error: ${e.message}\n`);
      return EXIT.usage;
    }
    io.stderr(`error: ${(e as Error).message}\n`);
    return EXIT.failed;
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;
const COMMON = { help: { type: 'boolean', short: 'h' }, name: { type: 'string' } } as const;

function parse<O extends Options>(sub: string, argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new LabUsageError(`lab ${sub}: ${(e as Error).message.replace(/\. To specify a positional argument.*$/s, '')}; see \`k8s-ha lab --help\``);
  }
}

function intOption(flag: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new LabUsageError(`--${flag} must be a whole number, not "${String(v)}"`);
  return n;
}

/**
 * Which lab a command means: --name, else $K8S_HA_LAB, else the only lab
 * that is up, else "lab".
 */
async function labName(flag: unknown, io: CliIO): Promise<string> {
  if (typeof flag === 'string') return flag;
  if (io.env.K8S_HA_LAB) return io.env.K8S_HA_LAB;
  const up = await listLabs(io.env);
  return up.length === 1 && up[0] ? up[0] : DEFAULT_LAB;
}

async function mustOpen(name: string, io: CliIO): Promise<Lab> {
  const lab = await openLab(name, io.env);
  if (!lab) {
    const up = await listLabs(io.env);
    throw new LabUsageError(`no lab "${name}" is up${up.length ? ` (up: ${up.join(', ')}; pick one with --name)` : '; start one with `k8s-ha lab up`'}`);
  }
  return lab;
}

async function dispatch(argv: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === 'help' || sub === '--help' || sub === '-h') {
    io.stdout(LAB_HELP);
    return EXIT.ok;
  }
  if (sub === 'up') return up(rest, io);
  if (sub === 'down') {
    const { values } = parse(sub, rest, {});
    if (values.help) return help(io);
    const name = await labName(values.name, io);
    await checkRequirements(io.env);
    if (!(await labDown(name, io.env))) {
      io.stdout(`lab ${name} is not up; nothing to remove\n`);
      return EXIT.ok;
    }
    io.stdout(`lab ${name} removed\n`);
    return EXIT.ok;
  }
  if (sub === 'status') return status(rest, io);
  if (sub === 'ssh') return ssh(rest, io);
  if (sub === 'image') {
    const { values } = parse(sub, rest, {});
    if (values.help) return help(io);
    await checkRequirements(io.env);
    const img = await ensureImage((l) => io.stderr(`${l}\n`), io.env);
    io.stdout(`${img.rootfs}\n`);
    return EXIT.ok;
  }
  if ((MACHINE_COMMANDS as readonly string[]).includes(sub)) return machineCommand(sub as MachineCommand, rest, io);
  throw new LabUsageError(`unknown lab command "${sub}"; see \`k8s-ha lab --help\``);
}

function help(io: CliIO): number {
  io.stdout(LAB_HELP);
  return EXIT.ok;
}

async function up(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse('up', argv, {
    servers: { type: 'string' },
    agents: { type: 'string' },
    lb2: { type: 'boolean' },
    galera: { type: 'boolean' },
    subnet: { type: 'string' },
    out: { type: 'string' },
    bare: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  } as const);
  if (values.help) return help(io);
  if (positionals.length) throw new LabUsageError(`lab up takes no arguments (got ${positionals.join(' ')}); see \`k8s-ha lab --help\``);
  const bare: Record<string, string[]> = {};
  for (const b of (values.bare as string[] | undefined) ?? []) {
    const m = /^([a-z0-9-]+)=([a-z0-9+.,-]+)$/.exec(b);
    if (!m?.[1] || !m[2]) throw new LabUsageError(`--bare "${b}": write it as MACHINE=PACKAGE[,PACKAGE...], e.g. --bare infra=haproxy`);
    bare[m[1]] = [...(bare[m[1]] ?? []), ...m[2].split(',').filter(Boolean)];
  }
  const opts: LabOptions = {
    name: typeof values.name === 'string' ? values.name : (io.env.K8S_HA_LAB ?? DEFAULT_LAB),
    servers: intOption('servers', values.servers),
    agents: intOption('agents', values.agents),
    lb2: values.lb2 === true,
    galera: values.galera === true,
    subnet: typeof values.subnet === 'string' ? values.subnet : undefined,
    out: typeof values.out === 'string' ? (values.out.startsWith('/') ? values.out : `${io.cwd}/${values.out}`) : undefined,
    bare,
    env: io.env,
    log: (l) => io.stderr(`${l}\n`),
    components: await labComponents(join(imageCacheRoot(io.env), 'components'), (l) => io.stderr(`${l}\n`)),
  };
  const t0 = Date.now();
  const lab = await labUp(opts);
  const secs = (Date.now() - t0) / 1000;
  if (values.json) {
    io.stdout(JSON.stringify({ name: lab.name, subnet: lab.subnet, clusterFile: lab.clusterFile, keyFile: lab.keyFile, machines: lab.machines, seconds: secs }) + '\n');
    return EXIT.ok;
  }
  io.stdout(`lab ${lab.name} is up in ${secs.toFixed(1)} s: ${lab.machines.length} machines on ${lab.subnet} (bridge ${lab.bridge})\n\n`);
  io.stdout(machineTable(lab));
  io.stdout(`\ncluster file: ${lab.clusterFile}\n`);
  if (lab.virtualIP) io.stdout(`virtual IP:   ${lab.virtualIP}\n`);
  io.stdout(`MetalLB pool: ${lab.metallbRange}\n`);
  io.stdout(`\nreach a machine:  k8s-ha lab ssh ${lab.machines[0]?.name ?? 'NAME'}${lab.name === DEFAULT_LAB ? '' : ` --name ${lab.name}`}\n`);
  io.stdout(`  or:             ssh -i ${lab.keyFile} -o UserKnownHostsFile=${lab.knownHostsFile} root@${lab.machines[0]?.address ?? 'ADDRESS'}\n`);
  io.stdout(`apply to it:      k8s-ha apply --file ${lab.clusterFile}\n`);
  io.stdout(`remove it:        k8s-ha lab down${lab.name === DEFAULT_LAB ? '' : ` --name ${lab.name}`}\n`);
  return EXIT.ok;
}

function machineTable(lab: Lab): string {
  const rows = lab.machines.map((m) => [m.name, m.address, m.roles.join(',')]);
  const w = [0, 1].map((i) => Math.max(...rows.map((r) => (r[i] ?? '').length), i === 0 ? 7 : 7));
  const line = (r: string[]): string => `  ${(r[0] ?? '').padEnd(w[0] ?? 0)}  ${(r[1] ?? '').padEnd(w[1] ?? 0)}  ${r[2] ?? ''}\n`;
  return line(['MACHINE', 'ADDRESS', 'ROLES']) + rows.map(line).join('');
}

async function status(argv: string[], io: CliIO): Promise<number> {
  const { values } = parse('status', argv, { json: { type: 'boolean' } } as const);
  if (values.help) return help(io);
  const lab = await mustOpen(await labName(values.name, io), io);
  const st = await lab.status();
  if (values.json) {
    io.stdout(JSON.stringify({ name: lab.name, subnet: lab.subnet, clusterFile: lab.clusterFile, keyFile: lab.keyFile, machines: st }) + '\n');
    return EXIT.ok;
  }
  io.stdout(`lab ${lab.name} on ${lab.subnet}; cluster file ${lab.clusterFile}\n`);
  const rows = st.map((s) => [
    s.name,
    s.address,
    s.roles.join(','),
    !s.running ? 'stopped' : s.frozen ? 'frozen' : s.cut ? 'cut' : 'running',
    s.ssh ? 'yes' : 'no',
  ]);
  const head = ['MACHINE', 'ADDRESS', 'ROLES', 'STATE', 'SSH'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  for (const r of [head, ...rows]) io.stdout(`  ${r.map((c, i) => c.padEnd(w[i] ?? 0)).join('  ').trimEnd()}\n`);
  return st.every((s) => s.running && s.ssh) ? EXIT.ok : EXIT.failed;
}

async function ssh(argv: string[], io: CliIO): Promise<number> {
  const dd = argv.indexOf('--');
  const own = dd >= 0 ? argv.slice(0, dd) : argv;
  const cmd = dd >= 0 ? argv.slice(dd + 1) : [];
  const { values, positionals } = parse('ssh', own, {});
  if (values.help) return help(io);
  const [machine, ...extra] = positionals;
  if (!machine || extra.length) throw new LabUsageError('usage: k8s-ha lab ssh MACHINE [-- COMMAND...]');
  const lab = await mustOpen(await labName(values.name, io), io);
  const m = lab.machine(machine);
  if (cmd.length) {
    // Through k8s-ha's own transport, as apply would reach the machine.
    const host = await lab.connect(m.name);
    try {
      const r = await host.exec(sh`${cmd}`, { allowFailure: true, timeoutMs: 24 * 3600_000 });
      io.stdout(r.stdout);
      io.stderr(r.stderr);
      return r.code ?? EXIT.failed;
    } finally {
      await host.close();
    }
  }
  if (!io.isTTY) throw new LabUsageError(`lab ssh ${machine}: an interactive shell needs a terminal; give a command after --`);
  const args = ['-i', lab.keyFile, '-o', `UserKnownHostsFile=${lab.knownHostsFile}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'IdentitiesOnly=yes', `root@${m.address}`];
  return new Promise((resolve) => {
    const child = spawn('ssh', args, { stdio: 'inherit' });
    child.on('error', (e) => {
      io.stderr(`error: running ssh: ${e.message}; install it with: apt-get install -y openssh-client\n`);
      resolve(EXIT.failed);
    });
    child.on('close', (code) => resolve(code ?? EXIT.failed));
  });
}

async function machineCommand(sub: MachineCommand, argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(sub, argv, { hard: { type: 'boolean' } } as const);
  if (values.hard && sub !== 'stop') throw new LabUsageError(`--hard is an option of \`lab stop\` only`);
  if (values.help) return help(io);
  const [machine, ...extra] = positionals;
  if (!machine || extra.length) throw new LabUsageError(`usage: k8s-ha lab ${sub} MACHINE`);
  await checkRequirements(io.env);
  const lab = await mustOpen(await labName(values.name, io), io);
  lab.machine(machine);
  const t0 = Date.now();
  switch (sub) {
    case 'stop':
      await lab.stop(machine, { hard: values.hard === true });
      break;
    case 'start':
      await lab.start(machine);
      break;
    case 'freeze':
      await lab.freeze(machine);
      break;
    case 'thaw':
      await lab.thaw(machine);
      break;
    case 'cut':
      await lab.cut(machine);
      break;
    case 'heal':
      await lab.heal(machine);
      break;
    case 'recreate':
      await lab.recreate(machine);
      break;
  }
  const done: Record<MachineCommand, string> = {
    stop: 'stopped',
    start: 'started (answers on SSH)',
    freeze: 'frozen',
    thaw: 'thawed',
    cut: 'cut off the network',
    heal: 'back on the network',
    recreate: 're-installed: empty disk, new SSH host key (answers on SSH)',
  };
  io.stdout(`${machine}: ${done[sub]} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  return EXIT.ok;
}
