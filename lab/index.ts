/**
 * k8s-ha lab: real local machines (systemd-nspawn, Debian 12, systemd and
 * sshd) for the whole topology, for tests, benchmarks and demos.
 *
 *   const lab = await labUp({ name: 'demo' });
 *   await lab.exec('server1', ['hostname']);
 *   await lab.down();
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FileHostKeyStore, hostKeyId, type HostKeyStore } from '../src/transport/hostkeys.js';
import type { Host } from '../src/transport/host.js';
import { connectSsh } from '../src/transport/ssh.js';
import { LabUsageError } from './errors.js';
import { ensureImage } from './image.js';
import { raiseHostLimits } from './limits.js';
import {
  boot, cgroupRoots, execIn, killMachineProcesses, waitMachinesGone, findLeader, findVeth, isMounted, machineCgroup, machineContainerdDir, mountOverlay, processAlive, purgePackages,
  removeLabCgroups, removeMachineCgroups, setFrozen, stopMachine, unmount, waitLeader, writeMachineFiles,
} from './machine.js';
import {
  addNat, chooseSubnet, createBridge, deleteLink, deleteNat, formatCidr, hostNameservers, hostNetworks, linkExists,
  readIpForward, setLink, writeIpForward,
} from './network.js';
import { sshBanner, waitSsh } from './ready.js';
import { checkRequirements } from './requirements.js';
import { run, type RunOptions, type RunResult } from './run.js';
import { acquireLock, labDir, readState, stateRoot, writeState, type LabState, type Lock, type MachineState, type Role } from './state.js';
import type { LabComponents } from './components.js';
import { checkLabName, planTopology, renderClusterFile, type TopologyOptions } from './topology.js';

export { LabUsageError } from './errors.js';
export type { Role } from './state.js';

/** The default lab name. */
export const DEFAULT_LAB = 'lab';

/** How long a test waits for another test's lab to go away. */
export const DEFAULT_TEST_LAB_WAIT_MS = 30 * 60_000;

export interface LabOptions extends TopologyOptions {
  /** Lab name: folder, bridge (`khl-NAME`) and cgroup names. Default: "lab". */
  name?: string;
  /** IPv4 CIDR, /24 or larger. Default: the first of 10.213.0-15.0/24 free on the host. */
  subnet?: string;
  /** Where the cluster file is written. Default: `<lab folder>/cluster.yaml`. */
  out?: string;
  /** Packages to purge from given machines (machine name -> packages), to test that apply installs them. Default: none. */
  bare?: Record<string, string[]>;
  /** Progress lines. Default: none. */
  log?: (line: string) => void;
  /** Milliseconds for every machine to answer on SSH. Default: 60000. */
  readyTimeoutMs?: number;
  /** The lab's k3s and MetalLB manifest for the cluster file (lab/components.ts). Default: none. */
  components?: LabComponents;
  /** Where K8S_HA_LAB_STATE / K8S_HA_LAB_CACHE are read. Default: process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface LabMachine {
  name: string;
  address: string;
  roles: Role[];
}

export interface MachineStatus extends LabMachine {
  running: boolean;
  frozen: boolean;
  /** Its network link is down (`cut`). */
  cut: boolean;
  /** sshd answered a TCP connection with its banner within 300 ms. */
  ssh: boolean;
  nspawnPid: number | null;
}

const KEY_NAME = 'id_ed25519';

function opLockPath(name: string, env: NodeJS.ProcessEnv): string {
  return join(stateRoot(env), `.${name}.lock`);
}

/** A lab that is up. Every method works from a fresh process too (the state file holds all). */
export class Lab {
  #state: LabState;
  readonly #env: NodeJS.ProcessEnv;

  constructor(state: LabState, env: NodeJS.ProcessEnv = process.env) {
    this.#state = state;
    this.#env = env;
  }

  get name(): string {
    return this.#state.name;
  }
  get subnet(): string {
    return this.#state.subnet;
  }
  /** The host's address on the lab bridge (the machines' gateway). */
  get gateway(): string {
    return this.#state.bridgeAddress;
  }
  get bridge(): string {
    return this.#state.bridge;
  }
  get dir(): string {
    return labDir(this.#state.name, this.#env);
  }
  get clusterFile(): string {
    return this.#state.clusterFile;
  }
  /** The lab's SSH private key (authorised for root on every machine). */
  get keyFile(): string {
    return this.#state.keyFile;
  }
  /** known_hosts with every machine's host key, for `ssh -o UserKnownHostsFile=`. */
  get knownHostsFile(): string {
    return join(this.dir, 'known_hosts');
  }
  get virtualIP(): string | null {
    return this.#state.virtualIP;
  }
  get metallbRange(): string {
    return this.#state.metallbRange;
  }
  get machines(): LabMachine[] {
    return this.#state.machines.map((m) => ({ name: m.name, address: m.address, roles: [...m.roles] }));
  }

  /** The machines' host keys, pinned at creation: hand it to connectSsh. */
  hostKeys(): HostKeyStore {
    return new FileHostKeyStore(this.knownHostsFile);
  }

  machine(name: string): LabMachine {
    const m = this.#machine(name);
    return { name: m.name, address: m.address, roles: [...m.roles] };
  }

  #machine(name: string): MachineState {
    const m = this.#state.machines.find((x) => x.name === name);
    if (!m) throw new LabUsageError(`lab ${this.name} has no machine "${name}"; it has ${this.#state.machines.map((x) => x.name).join(', ')}`);
    return m;
  }

  async #locked<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const lock = await acquireLock(opLockPath(this.name, this.#env), `lab ${this.name}: ${what}`, 120_000);
    try {
      // Another process may have changed the machines since this one read the state.
      this.#state = (await readState(this.name, this.#env)) ?? this.#state;
      return await fn();
    } finally {
      await lock.release();
    }
  }

  async #leader(m: MachineState): Promise<number> {
    const leader = m.nspawnPid !== null ? await findLeader(m.nspawnPid) : null;
    if (!leader) throw new LabUsageError(`${m.name} is stopped; start it with \`k8s-ha lab start ${m.name}\``);
    return leader;
  }

  /** Opens k8s-ha's SSH transport to a machine (root, the lab key, pinned host key). */
  connect(name: string, connectTimeoutMs = 10_000): Promise<Host> {
    const m = this.#machine(name);
    return connectSsh({ name: m.name, address: m.address, user: 'root', keyFile: this.keyFile, agent: false }, { hostKeys: this.hostKeys(), connectTimeoutMs });
  }

  /** Runs argv as root inside the machine through its namespaces (works while it is cut off). */
  async exec(name: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return execIn(await this.#leader(this.#machine(name)), argv, opts);
  }

  /** Waits until the machines (default: all running ones) answer on SSH through the transport. */
  async waitReady(names?: readonly string[], timeoutMs = 60_000): Promise<void> {
    const ms = names ? names.map((n) => this.#machine(n)) : this.#state.machines.filter((m) => m.nspawnPid !== null);
    const hostKeys = this.hostKeys();
    await Promise.all(ms.map((m) => waitSsh({ name: m.name, address: m.address, keyFile: this.keyFile }, hostKeys, timeoutMs)));
  }

  /** Powers the machine off: cleanly (SIGTERM to nspawn) or hard (SIGKILL to its init). */
  async stop(name: string, opts: { hard?: boolean } = {}): Promise<void> {
    await this.#locked(`stop ${name}`, async () => {
      const m = this.#machine(name);
      if (m.nspawnPid === null) return;
      // A frozen machine cannot act on SIGTERM, and v1-frozen tasks do not even die.
      await setFrozen(this.name, m.name, false).catch(() => undefined);
      await stopMachine(m.nspawnPid, opts.hard ?? false);
      await killMachineProcesses(this.name, m.name);
      m.nspawnPid = null;
      await writeState(this.#state, this.#env);
      await removeMachineCgroups(this.name, m.name);
    });
  }

  /** Boots a stopped machine (its disk, the overlay, kept what it had) and waits for SSH. */
  async start(name: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.#locked(`start ${name}`, async () => {
      const m = this.#machine(name);
      if (m.nspawnPid !== null && (await processAlive(m.nspawnPid))) return;
      await this.#boot(m);
      await writeState(this.#state, this.#env);
    });
    await this.waitReady([name], opts.timeoutMs ?? 60_000);
  }

  /**
   * The machine re-installed, as a user replaces a broken one: powered off,
   * its disk (overlay upper layer, containerd folder) thrown away, a fresh
   * overlay on the image with a new machine-id and a new SSH host key
   * (known_hosts updated), booted. Same name and address.
   */
  async recreate(name: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.stop(name, { hard: true });
    await this.#locked(`recreate ${name}`, async () => {
      const m = this.#machine(name);
      await waitMachinesGone([m.unit]);
      await unmount(m.merged);
      for (const dir of [m.upper, m.work, machineContainerdDir(m)]) await rm(dir, { recursive: true, force: true });
      await mountOverlay(this.#state.imageRootfs, m);
      const hostKey = await writeMachineFiles(m.merged, {
        hostname: m.name,
        address: m.address,
        prefix: Number(this.#state.subnet.split('/')[1]),
        gateway: this.#state.bridgeAddress,
        nameservers: await hostNameservers(),
        hosts: this.#state.machines.map((x) => ({ name: x.name, address: x.address })),
        authorizedKey: await readFile(`${this.keyFile}.pub`, 'utf8'),
      });
      if (m.bare.length) await purgePackages(m.merged, m.bare);
      const known = (await readFile(this.knownHostsFile, 'utf8')).split('\n').filter((l) => l && !l.startsWith(`${m.address},`));
      known.push(`${m.address},${hostKeyId(m.address, 22)} ${hostKey.split(/\s+/).slice(0, 2).join(' ')}`);
      await writeFile(this.knownHostsFile, known.join('\n') + '\n', { mode: 0o600 });
      await this.#boot(m);
      await writeState(this.#state, this.#env);
    });
    await this.waitReady([name], opts.timeoutMs ?? 60_000);
  }

  async #boot(m: MachineState): Promise<void> {
    m.nspawnPid = await boot(m, { lab: this.name, bridge: this.bridge, consoleLog: join(dirname(m.upper), 'console.log') });
    // Recorded before anything else can fail, so `down` finds the process.
    await writeState(this.#state, this.#env);
    const leader = await waitLeader(m.nspawnPid, m.name);
    m.veth = await findVeth(leader);
  }

  /** Stops every process of the machine at once; connections stay open but get no answer. */
  async freeze(name: string): Promise<void> {
    const m = this.#machine(name);
    await this.#leader(m);
    await setFrozen(this.name, m.name, true);
  }

  /** Lets a frozen machine run again; nothing to do for a stopped one. */
  async thaw(name: string): Promise<void> {
    const m = this.#machine(name);
    if (m.nspawnPid === null || !(await processAlive(m.nspawnPid))) return;
    await setFrozen(this.name, m.name, false);
  }

  /** Takes the machine's network link down (its veth on the bridge). */
  async cut(name: string): Promise<void> {
    const m = this.#machine(name);
    await this.#leader(m);
    await setLink(m.veth, false);
  }

  async heal(name: string): Promise<void> {
    const m = this.#machine(name);
    await this.#leader(m);
    await setLink(m.veth, true);
  }

  async status(): Promise<MachineStatus[]> {
    return Promise.all(
      this.#state.machines.map(async (m) => {
        const running = m.nspawnPid !== null && (await processAlive(m.nspawnPid));
        let frozen = false;
        let cut = false;
        if (running) {
          const fz = join('/sys/fs/cgroup/freezer', machineCgroup(this.name, m.name), 'freezer.state');
          const events = cgroupRoots().map((r) => join(r, machineCgroup(this.name, m.name), 'cgroup.events')).find((p) => existsSync(p));
          if (existsSync(fz)) frozen = (await readFile(fz, 'utf8')).trim() !== 'THAWED';
          else if (events) frozen = (await readFile(events, 'utf8')).includes('frozen 1');
          const link = await run(['ip', '-j', 'link', 'show', 'dev', m.veth], { allowFailure: true });
          cut = link.code === 0 && !(JSON.parse(link.stdout) as { flags?: string[] }[])[0]?.flags?.includes('UP');
        }
        const ssh = running && !frozen && !cut && (await sshBanner(m.address, 22, 300));
        return { name: m.name, address: m.address, roles: [...m.roles], running, frozen, cut, ssh, nspawnPid: running ? m.nspawnPid : null };
      }),
    );
  }

  /** Removes every machine, mount, link, rule, process and file of the lab. */
  async down(): Promise<void> {
    await teardown(this.name, this.#env);
  }

  /** For labUp: boots every machine (already mounted) and records them. */
  async bootAll(): Promise<void> {
    await Promise.all(this.#state.machines.map((m) => this.#boot(m)));
    await writeState(this.#state, this.#env);
  }
}

/** The lab of that name when it is up, else null. */
export async function openLab(name = DEFAULT_LAB, env: NodeJS.ProcessEnv = process.env): Promise<Lab | null> {
  const st = await readState(name, env);
  return st ? new Lab(st, env) : null;
}

/** Names of the labs that are up (have a state file). */
export async function listLabs(env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const root = stateRoot(env);
  if (!existsSync(root)) return [];
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true })) {
    if (e.isDirectory() && existsSync(join(root, e.name, 'lab.json'))) out.push(e.name);
  }
  return out.sort();
}

/**
 * Brings a lab up: the image (built once, cached), a bridge with NAT, one
 * overlay and one systemd-nspawn machine per host, the cluster file. Resolves
 * when every machine answers on SSH through k8s-ha's transport. On failure,
 * whatever was made is removed again before the error is thrown.
 */
export async function labUp(opts: LabOptions = {}): Promise<Lab> {
  const env = opts.env ?? process.env;
  const name = opts.name ?? DEFAULT_LAB;
  const log = opts.log ?? ((): void => {});
  checkLabName(name);
  await checkRequirements(env);
  const lock = await acquireLock(opLockPath(name, env), `lab ${name}: up`, 0).catch((e: Error) => {
    throw new LabUsageError(`lab ${name} is busy: ${e.message}`);
  });
  let made = false;
  try {
    if (await readState(name, env)) {
      throw new LabUsageError(`lab "${name}" is already up; see \`k8s-ha lab status --name ${name}\`, or remove it with \`k8s-ha lab down --name ${name}\``);
    }
    const image = await ensureImage(log, env);
    for (const line of await raiseHostLimits()) log(line);
    const subnet = chooseSubnet(opts.subnet, await hostNetworks());
    const topo = planTopology(subnet, opts);
    for (const m of Object.keys(opts.bare ?? {})) {
      if (!topo.machines.some((x) => x.name === m)) throw new LabUsageError(`bare: the lab has no machine "${m}"; it has ${topo.machines.map((x) => x.name).join(', ')}`);
    }
    const dir = labDir(name, env);
    const keyFile = join(dir, KEY_NAME);
    const clusterFile = opts.out ? (isAbsolute(opts.out) ? opts.out : resolve(opts.out)) : join(dir, 'cluster.yaml');
    const bridge = `khl-${name}`;
    if (await linkExists(bridge)) throw new LabUsageError(`the link ${bridge} already exists on the host, left by a lab that crashed? remove it with \`ip link del ${bridge}\``);
    const state: LabState = {
      version: 1,
      name,
      subnet: formatCidr(subnet),
      bridge,
      bridgeAddress: topo.gateway,
      nftTable: `k8s_ha_lab_${name.replace(/-/g, '_')}`,
      ipForwardBefore: null,
      imageRootfs: image.rootfs,
      keyFile,
      clusterFile,
      extraFiles: clusterFile.startsWith(`${dir}/`) ? [] : [clusterFile],
      machines: topo.machines.map((m) => ({
        name: m.name,
        address: m.address,
        roles: m.roles,
        unit: `${name}-${m.name}`,
        upper: join(dir, 'machines', m.name, 'upper'),
        work: join(dir, 'machines', m.name, 'work'),
        merged: join(dir, 'machines', m.name, 'root'),
        veth: '',
        cgroup: machineCgroup(name, m.name),
        nspawnPid: null,
        bare: opts.bare?.[m.name] ?? [],
      })),
      virtualIP: topo.virtualIP,
      metallbRange: topo.metallbRange,
      createdAt: new Date().toISOString(),
    };
    // From here on everything made is in the state file first, so down can undo it.
    made = true;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeState(state, env);
    log(`lab ${name}: subnet ${state.subnet}, bridge ${bridge} (${topo.gateway})`);

    await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `k8s-ha-lab-${name}`, '-f', keyFile]);
    const publicKey = await readFile(`${keyFile}.pub`, 'utf8');

    state.ipForwardBefore = await readIpForward();
    await writeState(state, env);
    await createBridge(bridge, topo.gateway, subnet.prefix);
    await addNat(state.nftTable, state.subnet, bridge);
    if (state.ipForwardBefore !== '1') await writeIpForward('1');

    const nameservers = await hostNameservers();
    if (!nameservers.length) log('W: the host resolves names only through a local stub; machines get no nameserver (apt-get will fail)');
    const hosts = state.machines.map((m) => ({ name: m.name, address: m.address }));
    const hostKeys: string[] = [];
    await Promise.all(
      state.machines.map(async (m, i) => {
        await mountOverlay(image.rootfs, m);
        hostKeys[i] = await writeMachineFiles(m.merged, {
          hostname: m.name, address: m.address, prefix: subnet.prefix, gateway: topo.gateway, nameservers, hosts, authorizedKey: publicKey,
        });
        if (m.bare.length) {
          log(`${m.name}: purging ${m.bare.join(' ')}`);
          await purgePackages(m.merged, m.bare);
        }
      }),
    );
    await writeFile(
      join(dir, 'known_hosts'),
      // Both spellings: OpenSSH looks a port-22 host up by its bare address,
      // k8s-ha's transport by `[address]:port`.
      state.machines.map((m, i) => `${m.address},${hostKeyId(m.address, 22)} ${(hostKeys[i] ?? '').split(/\s+/).slice(0, 2).join(' ')}`).join('\n') + '\n',
      { mode: 0o600 },
    );
    await mkdir(dirname(clusterFile), { recursive: true });
    await writeFile(clusterFile, renderClusterFile({ name, keyFile, topology: topo, components: opts.components }));

    const lab = new Lab(state, env);
    const t0 = Date.now();
    log(`booting ${state.machines.length} machines`);
    await lab.bootAll();
    await lab.waitReady(undefined, opts.readyTimeoutMs ?? 60_000);
    log(`all ${state.machines.length} machines answer on SSH (${((Date.now() - t0) / 1000).toFixed(1)} s after boot)`);
    return lab;
  } catch (e) {
    if (made) {
      await teardown(name, env, true).catch((err: Error) => log(`W: cleaning up after the failed lab up: ${err.message}`));
    }
    throw e;
  } finally {
    await lock.release();
    if (made) await rmdir(stateRoot(env)).catch(() => undefined);
  }
}

/**
 * Removes the lab: tolerant of anything already gone, so it also cleans up
 * after a crash. Returns false when there was no such lab.
 */
export async function labDown(name = DEFAULT_LAB, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  checkLabName(name);
  if (!(await readState(name, env))) return false;
  await teardown(name, env);
  return true;
}

async function teardown(name: string, env: NodeJS.ProcessEnv, lockHeld = false): Promise<void> {
  let lock: Lock | null = null;
  if (!lockHeld) lock = await acquireLock(opLockPath(name, env), `lab ${name}: down`, 120_000);
  const errors: string[] = [];
  const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      errors.push(`${what}: ${(e as Error).message}`);
    }
  };
  try {
    const st = await readState(name, env);
    if (!st) return;
    await Promise.all(
      st.machines.map(async (m) => {
        await step(`${m.name}: thaw`, () => setFrozen(name, m.name, false).catch(() => undefined));
        // Machines are thrown away: no need to wait for a clean power-off.
        if (m.nspawnPid !== null) await step(`${m.name}: stop`, () => stopMachine(m.nspawnPid ?? 0, true));
        await step(`${m.name}: kill`, () => killMachineProcesses(name, m.name));
      }),
    );
    // Only once every nspawn of the lab has exited are its machines gone (bounded).
    await step('machines', () => waitMachinesGone(st.machines.map((m) => m.unit)));
    // A dead machine's network namespace (and its veth) is freed by the kernel
    // a moment later; wait, so nothing of the lab is left on the host.
    await step('veths', () => waitVethsGone(st));
    for (const m of st.machines) {
      await step(`${m.name}: unmount`, () => unmount(m.merged));
      await step(`${m.name}: cgroups`, () => removeMachineCgroups(name, m.name));
    }
    await step('cgroups', () => removeLabCgroups(name));
    await step('bridge', () => deleteLink(st.bridge));
    await step('nftables', () => deleteNat(st.nftTable));
    // ip_forward goes back to what it was once no other lab needs it.
    if (st.ipForwardBefore !== null && st.ipForwardBefore !== '1') {
      const others = (await listLabs(env)).filter((l) => l !== name);
      if (!others.length) await step('ip_forward', () => writeIpForward(st.ipForwardBefore ?? '0'));
    }
    for (const f of st.extraFiles) await step(`remove ${f}`, () => rm(f, { force: true }));
    const stillMounted = (await Promise.all(st.machines.map((m) => isMounted(m.merged)))).some(Boolean);
    if (stillMounted) errors.push('an overlay is still mounted; the lab folder is kept (run `k8s-ha lab down` again)');
    else await step('lab folder', () => rm(labDir(name, env), { recursive: true, force: true }));
  } finally {
    await lock?.release();
    await rmdir(stateRoot(env)).catch(() => undefined);
  }
  if (errors.length) throw new Error(`lab ${name}: down left things behind:\n  ${errors.join('\n  ')}`);
}

async function waitVethsGone(st: LabState): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await run(['ip', '-j', 'link', 'show', 'master', st.bridge], { allowFailure: true });
    const left = r.code === 0 ? (JSON.parse(r.stdout || '[]') as { ifname: string }[]) : [];
    if (!left.length) return;
    if (Date.now() > deadline) {
      for (const l of left) await deleteLink(l.ifname);
      return;
    }
    await sleep(50);
  }
}
