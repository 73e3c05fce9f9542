import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { chmod, mkdir, open, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { linkNameByIndex } from './network.js';
import { run, withSbin, type RunOptions, type RunResult } from './run.js';
import type { MachineState } from './state.js';

const CGROUP_FS = '/sys/fs/cgroup';

/**
 * The cgroup hierarchies a machine gets a folder of its own in: on cgroup v1
 * every controller (cpu, cpuacct, cpuset, memory, devices, blkio, pids,
 * freezer, ...) plus name=systemd and the empty unified one. nspawn with
 * --keep-unit makes `payload` and `supervisor` below the cgroup it starts in,
 * and a kubelet inside makes `/kubepods` at the root it sees: started from
 * the host's root cgroup, two machines would share both. A folder per machine
 * in every hierarchy keeps them apart, lets `down` remove what they made, and
 * (in the v1 freezer, or v2's cgroup.freeze) freezes a machine in one write.
 */
export function cgroupRoots(): string[] {
  if (existsSync(join(CGROUP_FS, 'cgroup.controllers'))) return [CGROUP_FS]; // pure cgroup v2
  const seen = new Set<string>();
  const out: string[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(CGROUP_FS).sort();
  } catch {
    return [];
  }
  for (const e of entries) {
    const d = join(CGROUP_FS, e);
    if (!existsSync(join(d, 'cgroup.procs'))) continue;
    // cpu and cpuacct are often links to one `cpu,cpuacct` mount: one folder there.
    let real = d;
    try {
      real = realpathSync(d);
    } catch {
      continue;
    }
    if (seen.has(real)) continue;
    seen.add(real);
    out.push(d);
  }
  return out;
}

/**
 * A new v1 cpuset cgroup starts with empty cpus and mems, and a process cannot
 * join it until both are set: copy them down from the parent, level by level.
 */
async function fillCpuset(root: string, rel: string): Promise<void> {
  if (!existsSync(join(root, 'cpuset.cpus'))) return;
  let dir = root;
  for (const part of rel.split('/')) {
    const child = join(dir, part);
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const cur = (await readFile(join(child, f), 'utf8')).trim();
      if (!cur) await writeFile(join(child, f), (await readFile(join(dir, f), 'utf8')).trim() + '\n');
    }
    dir = child;
  }
}

export function machineCgroup(lab: string, name: string): string {
  return join('k8s-ha-lab', lab, name);
}

/** Removes a cgroup folder and everything below it (they must hold no process). */
async function removeCgroupTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) await removeCgroupTree(join(dir, e.name));
  }
  for (let i = 0; ; i++) {
    try {
      await rmdir(dir);
      return;
    } catch (e) {
      // EBUSY for a moment after the last process left.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      if (i >= 40) throw new Error(`removing cgroup ${dir}: ${(e as Error).message}; a process of the machine may still be alive`);
      await sleep(50);
    }
  }
}

async function cgroupPids(dir: string): Promise<number[]> {
  if (!existsSync(dir)) return [];
  const pids = (await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (e.isDirectory()) pids.push(...(await cgroupPids(join(dir, e.name))));
  }
  return pids;
}

/** Every process in the machine's cgroups: nspawn, its init and all below. */
export async function machinePids(lab: string, name: string): Promise<number[]> {
  const all = new Set<number>();
  for (const r of cgroupRoots()) for (const p of await cgroupPids(join(r, machineCgroup(lab, name)))) all.add(p);
  return [...all];
}

/**
 * Kills whatever still runs in the machine's cgroups: the safety net of
 * `down`, which must leave no process behind even when the state file lost
 * track of one (a crash between spawning nspawn and recording it).
 */
export async function killMachineProcesses(lab: string, name: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = [];
    for (const p of await machinePids(lab, name)) if (await processAlive(p)) pids.push(p);
    if (!pids.length) return;
    if (Date.now() > deadline) throw new Error(`${name}: processes ${pids.join(' ')} survived SIGKILL for ${timeoutMs} ms`);
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await sleep(100);
  }
}

export async function removeMachineCgroups(lab: string, name: string): Promise<void> {
  for (const root of cgroupRoots()) await removeCgroupTree(join(root, machineCgroup(lab, name)));
}

/** Removes the lab's (and, when empty, k8s-ha-lab's) cgroup folders. */
export async function removeLabCgroups(lab: string): Promise<void> {
  for (const root of cgroupRoots()) {
    const labDir = join(root, 'k8s-ha-lab', lab);
    if (existsSync(labDir)) await removeCgroupTree(labDir);
    await rmdir(join(root, 'k8s-ha-lab')).catch(() => undefined);
  }
}

// ---- the root filesystem ----------------------------------------------------

export interface MachineFiles {
  hostname: string;
  address: string;
  prefix: number;
  gateway: string;
  nameservers: string[];
  /** Every machine of the lab, for /etc/hosts. */
  hosts: { name: string; address: string }[];
  authorizedKey: string;
}

export async function mountOverlay(lower: string, m: MachineState): Promise<void> {
  for (const p of [lower, m.upper, m.work, m.merged]) {
    // The mount options are a comma-separated list: such a path would be misread.
    if (/[,:\s]/.test(p)) throw new Error(`path ${p} contains a comma, colon or space; overlayfs options cannot hold it. Use a state folder without them (K8S_HA_LAB_STATE).`);
  }
  await mkdir(m.upper, { recursive: true });
  await mkdir(m.work, { recursive: true });
  await mkdir(m.merged, { recursive: true });
  await run(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${m.upper},workdir=${m.work}`, m.merged]);
}

export async function isMounted(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((l) => l.split(' ')[4] === path);
}

export async function unmount(path: string): Promise<void> {
  if (!(await isMounted(path))) return;
  const r = await run(['umount', path], { allowFailure: true });
  // Busy (a shell of the user still in it): detach now, freed when it leaves.
  if (r.code !== 0) await run(['umount', '--lazy', path]);
}

/** The files that make the image this machine: its name, address, keys. Returns its SSH host key. */
export async function writeMachineFiles(root: string, f: MachineFiles): Promise<string> {
  const w = async (rel: string, content: string, mode = 0o644): Promise<void> => {
    const p = join(root, rel);
    await mkdir(join(p, '..'), { recursive: true });
    await writeFile(p, content, { mode });
    await chmod(p, mode);
  };
  await w('etc/hostname', `${f.hostname}\n`);
  await w('etc/machine-id', `${randomBytes(16).toString('hex')}\n`, 0o444);
  await w(
    'etc/hosts',
    ['127.0.0.1\tlocalhost', `127.0.1.1\t${f.hostname}`, '::1\tlocalhost ip6-localhost ip6-loopback', ...f.hosts.map((h) => `${h.address}\t${h.name}`)].join('\n') + '\n',
  );
  await w('etc/resolv.conf', f.nameservers.map((n) => `nameserver ${n}`).join('\n') + '\n');
  // 10- sorts before the image's 80-container-host0.network, which would
  // otherwise win and leave host0 with a link-local address only.
  await w(
    'etc/systemd/network/10-lab.network',
    ['[Match]', 'Name=host0', '', '[Network]', `Address=${f.address}/${f.prefix}`, `Gateway=${f.gateway}`, 'LinkLocalAddressing=no', 'IPv6AcceptRA=no', ''].join('\n'),
  );
  await mkdir(join(root, 'root/.ssh'), { recursive: true, mode: 0o700 });
  await chmod(join(root, 'root/.ssh'), 0o700);
  await w('root/.ssh/authorized_keys', `${f.authorizedKey.trim()}\n`, 0o600);
  const hostKey = join(root, 'etc/ssh/ssh_host_ed25519_key');
  await rm(hostKey, { force: true });
  await rm(`${hostKey}.pub`, { force: true });
  await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `root@${f.hostname}`, '-f', hostKey]);
  return (await readFile(`${hostKey}.pub`, 'utf8')).trim();
}

/**
 * Purges packages from this machine's overlay only (the image is untouched),
 * so a test can prove that apply installs what a host lacks.
 */
export async function purgePackages(root: string, packages: readonly string[]): Promise<void> {
  if (!packages.length) return;
  for (const p of packages) {
    if (!/^[a-z0-9][a-z0-9+.-]+$/.test(p)) throw new Error(`bare: "${p}" is not a Debian package name`);
  }
  await run(['chroot', root, 'env', 'DEBIAN_FRONTEND=noninteractive', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'dpkg', '--purge', '--force-depends', ...packages], {
    timeoutMs: 120_000,
  });
}

// ---- processes --------------------------------------------------------------

interface ProcInfo {
  pid: number;
  ppid: number;
  state: string;
}

async function procInfo(pid: number): Promise<ProcInfo | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: fields start after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, state: rest[0] ?? '?', ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

/** True while the process exists and is not a zombie. */
export async function processAlive(pid: number): Promise<boolean> {
  const p = await procInfo(pid);
  return p !== null && p.state !== 'Z' && p.state !== 'X';
}

export async function waitExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await processAlive(pid))) return true;
    await sleep(50);
  }
  return !(await processAlive(pid));
}

/** The machine's init (PID 1 inside): the child of nspawn that leads a PID namespace. */
export async function findLeader(nspawnPid: number): Promise<number | null> {
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const p = await procInfo(Number(e));
    if (!p || p.ppid !== nspawnPid) continue;
    const status = await readFile(`/proc/${e}/status`, 'utf8').catch(() => '');
    const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
    if (nspid.length >= 2 && nspid[nspid.length - 1] === '1') return p.pid;
  }
  return null;
}

/**
 * What a real kubelet, containerd and runc need from nspawn (FACTS, "Real
 * kubelets in the lab"): every capability (runc sets up namespaces, mounts
 * and cgroups for each container), the keyring calls runc makes for each
 * container's session keyring and bpf, and /dev/kmsg for the kubelet's OOM
 * watcher.
 */
export const KUBELET_NSPAWN_ARGS: readonly string[] = ['--capability=all', '--system-call-filter=@keyring bpf', '--bind=/dev/kmsg'];

/**
 * The machine's /var/lib/containerd: a folder of the host's own filesystem
 * (beside the overlay's upper dir), because containerd's overlayfs snapshots
 * cannot sit on the machine's overlay root. Removed with the lab folder.
 */
export function machineContainerdDir(m: Pick<MachineState, 'upper'>): string {
  return join(dirname(m.upper), 'containerd');
}

export interface BootOptions {
  lab: string;
  bridge: string;
  consoleLog: string;
}

/**
 * Boots the machine as a detached child (its own session: a Ctrl-C on the
 * command that started it does not reach it). Returns the nspawn pid.
 */
export async function boot(m: MachineState, o: BootOptions): Promise<number> {
  const roots = cgroupRoots();
  const cg = machineCgroup(o.lab, m.name);
  for (const r of roots) {
    await removeCgroupTree(join(r, cg));
    await mkdir(join(r, cg), { recursive: true });
    await fillCpuset(r, cg);
  }
  const containerdDir = machineContainerdDir(m);
  await mkdir(containerdDir, { recursive: true, mode: 0o700 });
  const nspawn = [
    'systemd-nspawn', '--boot', '-D', m.merged, `--machine=${m.unit}`, `--network-bridge=${o.bridge}`,
    '--register=no', '--keep-unit', '--console=read-only', '--link-journal=no', '--resolv-conf=off', '--timezone=off',
    ...KUBELET_NSPAWN_ARGS, `--bind=${containerdDir}:/var/lib/containerd`,
  ];
  // The shell only moves itself into the machine's cgroups, then becomes
  // nspawn; every value reaches it as a positional parameter, never as code.
  const script = 'n=$1; shift; i=0; while [ $i -lt $n ]; do echo $$ > "$1/cgroup.procs" || exit 97; shift; i=$((i+1)); done; exec "$@"';
  const args = ['-c', script, 'sh', String(roots.length), ...roots.map((r) => join(r, cg)), ...nspawn];
  const fh = await open(o.consoleLog, 'a');
  try {
    const child = spawn('/bin/sh', args, { detached: true, stdio: ['ignore', fh.fd, fh.fd], env: withSbin(process.env) });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`${m.name}: could not start systemd-nspawn`);
    child.unref();
    return pid;
  } finally {
    await fh.close();
  }
}

/** The host side of the machine's veth: the peer of host0 inside it. */
export async function findVeth(leader: number, timeoutMs = 5_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await run(['nsenter', `--target=${leader}`, '--net', '--', 'ip', '-j', 'link', 'show', 'dev', 'host0'], { allowFailure: true });
    if (r.code === 0) {
      const link = (JSON.parse(r.stdout) as { link_index?: number }[])[0];
      if (link?.link_index !== undefined) {
        const name = await linkNameByIndex(link.link_index);
        if (name) return name;
      }
    }
    if (Date.now() > deadline) throw new Error(`machine with init ${leader}: host0 has no veth peer on the host after ${timeoutMs} ms`);
    await sleep(50);
  }
}

export async function waitLeader(nspawnPid: number, name: string, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const l = await findLeader(nspawnPid);
    if (l) return l;
    if (!(await processAlive(nspawnPid))) throw new Error(`${name}: systemd-nspawn exited during boot; see its console log`);
    if (Date.now() > deadline) throw new Error(`${name}: no init process ${timeoutMs} ms after systemd-nspawn started`);
    await sleep(20);
  }
}

/**
 * Stops a machine. Clean: SIGTERM to nspawn, which powers the machine off.
 * Hard: SIGKILL to its init (killing only nspawn would orphan the machine).
 */
export async function stopMachine(nspawnPid: number, hard: boolean, timeoutMs = 30_000): Promise<void> {
  if (!(await processAlive(nspawnPid))) return;
  const leader = await findLeader(nspawnPid);
  if (!hard) {
    process.kill(nspawnPid, 'SIGTERM');
    if (await waitExit(nspawnPid, timeoutMs)) return;
  }
  if (leader && (await processAlive(leader))) process.kill(leader, 'SIGKILL');
  if (await waitExit(nspawnPid, 5_000)) return;
  process.kill(nspawnPid, 'SIGKILL');
  await waitExit(nspawnPid, 5_000);
}

// ---- freeze -----------------------------------------------------------------

/**
 * Freezes (or thaws) every process of the machine at once through its cgroup:
 * the kernel still holds its sockets, so connections stay open but nothing
 * answers. Returns when the kernel reports the new state.
 */
export async function setFrozen(lab: string, name: string, frozen: boolean): Promise<void> {
  const cg = machineCgroup(lab, name);
  const v1 = join(CGROUP_FS, 'freezer', cg, 'freezer.state');
  const v2root = cgroupRoots().find((r) => r === CGROUP_FS || r.endsWith('/unified'));
  const v2 = v2root ? join(v2root, cg, 'cgroup.freeze') : null;
  if (existsSync(v1)) {
    await writeFile(v1, frozen ? 'FROZEN\n' : 'THAWED\n');
    const want = frozen ? 'FROZEN' : 'THAWED';
    for (let i = 0; i < 200; i++) {
      if ((await readFile(v1, 'utf8')).trim() === want) return;
      await sleep(25);
    }
    throw new Error(`${name}: the freezer did not reach ${want} within 5 s`);
  }
  if (v2 && existsSync(v2)) {
    await writeFile(v2, frozen ? '1\n' : '0\n');
    const events = join(v2, '..', 'cgroup.events');
    for (let i = 0; i < 200; i++) {
      if ((await readFile(events, 'utf8')).includes(`frozen ${frozen ? 1 : 0}`)) return;
      await sleep(25);
    }
    throw new Error(`${name}: cgroup.freeze did not take effect within 5 s`);
  }
  throw new Error(`${name}: the host has no cgroup freezer (neither v1 freezer nor cgroup v2); freeze needs one`);
}

// ---- running commands inside ------------------------------------------------

/**
 * Runs argv inside the machine through its namespaces (not SSH), so it works
 * while the machine is cut off the network.
 */
export function execIn(leader: number, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(
    ['nsenter', `--target=${leader}`, '--mount', '--uts', '--ipc', '--net', '--pid', '--root', '--wd', '--', '/usr/bin/env', '-i',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root', 'LANG=C.UTF-8', ...argv],
    opts,
  );
}

// ---- gone -------------------------------------------------------------------

/** The live (not zombie) systemd-nspawn processes running one of these machine units. */
export async function nspawnProcesses(units: readonly string[]): Promise<{ pid: number; unit: string }[]> {
  const wanted = new Set(units.map((u) => `--machine=${u}`));
  const out: { pid: number; unit: string }[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const args = (await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!args.some((a) => a === 'systemd-nspawn' || a.endsWith('/systemd-nspawn'))) continue;
    const m = args.find((a) => wanted.has(a));
    if (m && (await processAlive(Number(e)))) out.push({ pid: Number(e), unit: m.slice('--machine='.length) });
  }
  return out;
}

/**
 * Returns once no systemd-nspawn of these machines runs any more: after its
 * init is killed, nspawn still tears down (veth, mounts) for a second or two,
 * and a `lab up` started then would meet the old lab. Those left are killed
 * after half the bound; throws, naming them, when any survives `timeoutMs`.
 */
export async function waitMachinesGone(units: readonly string[], timeoutMs = 20_000): Promise<void> {
  const start = Date.now();
  let killed = false;
  for (;;) {
    const left = await nspawnProcesses(units);
    if (!left.length) return;
    const waited = Date.now() - start;
    if (waited > timeoutMs) throw new Error(`systemd-nspawn still runs ${timeoutMs} ms after the machines were stopped: ${left.map((l) => `${l.unit} (pid ${l.pid})`).join(', ')}`);
    if (!killed && waited > timeoutMs / 2) {
      killed = true;
      for (const l of left) {
        try {
          process.kill(l.pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    }
    await sleep(50);
  }
}
