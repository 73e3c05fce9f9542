import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The root of every lab's folder. Default: /var/lib/k8s-ha-lab (K8S_HA_LAB_STATE overrides). */
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.K8S_HA_LAB_STATE ?? '/var/lib/k8s-ha-lab';
}

export function labDir(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(stateRoot(env), name);
}

export type Role = 'loadbalancer' | 'datastore' | 'server' | 'agent';

export interface MachineState {
  name: string;
  address: string;
  roles: Role[];
  /** Name nspawn registers; also the cgroup folder name. */
  unit: string;
  /** The overlay: upper and work dirs are this machine's own; merged is its root. */
  upper: string;
  work: string;
  merged: string;
  /** Host side of the machine's veth pair, on the lab bridge. */
  veth: string;
  /** Freezer cgroup the machine runs in (null when the host has no v1 freezer). */
  cgroup: string | null;
  /** The systemd-nspawn process, or null when stopped. */
  nspawnPid: number | null;
  /** Packages purged from this machine's overlay. */
  bare: string[];
}

/**
 * Everything a lab made on the host, written before each thing is made, so
 * `lab down` can undo it all even after a crash halfway through `lab up`.
 */
export interface LabState {
  version: 1;
  name: string;
  subnet: string;
  bridge: string;
  bridgeAddress: string;
  /** nftables table holding the lab's NAT and forward rules. */
  nftTable: string;
  /** The value of net.ipv4.ip_forward before the lab turned it on. */
  ipForwardBefore: string | null;
  imageRootfs: string;
  keyFile: string;
  clusterFile: string;
  /** Extra files outside the lab folder (e.g. `--out`), removed by `down`. */
  extraFiles: string[];
  machines: MachineState[];
  /** Addresses handed out besides the machines' (VIP, MetalLB pool). */
  virtualIP: string | null;
  metallbRange: string;
  createdAt: string;
}

export function statePath(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(labDir(name, env), 'lab.json');
}

export async function readState(name: string, env: NodeJS.ProcessEnv = process.env): Promise<LabState | null> {
  try {
    return JSON.parse(await readFile(statePath(name, env), 'utf8')) as LabState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

let writes = 0;

/** Written to a temp file and renamed: a crash never leaves half a state file. */
export async function writeState(state: LabState, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const p = statePath(state.name, env);
  await mkdir(dirname(p), { recursive: true });
  // Machines boot in parallel and each records itself: one temp file per write.
  const tmp = `${p}.${process.pid}.${++writes}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n');
  await rename(tmp, p);
}

export interface Lock {
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An exclusive lock file holding the owner's pid. A lock left by a dead
 * process is taken over; a live owner is waited for up to `waitMs`, then the
 * error says who holds it.
 */
export async function acquireLock(path: string, what: string, waitMs = 0): Promise<Lock> {
  await mkdir(dirname(path), { recursive: true });
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return { release: () => rm(path, { force: true }) };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ENOENT: someone removed the (empty) folder between our mkdir and open.
      if (code === 'ENOENT') {
        await mkdir(dirname(path), { recursive: true });
        continue;
      }
      if (code !== 'EEXIST') throw e;
    }
    const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    if (!Number.isFinite(owner) || !alive(owner)) {
      // Stale: its owner died without releasing it.
      await rm(path, { force: true });
      continue;
    }
    if (owner === process.pid) throw new Error(`${what}: this process already holds ${path}`);
    if (Date.now() >= deadline) {
      throw new Error(`${what}: process ${owner} holds the lock ${path}; wait for it to finish, or kill it if it is stuck`);
    }
    await sleep(250);
  }
}
