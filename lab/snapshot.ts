import { existsSync } from 'node:fs';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir } from './image.js';
import { cgroupRoots } from './machine.js';
import { run } from './run.js';
import { stateRoot } from './state.js';

/**
 * What a lab could leave on the host, for a before/after comparison: every
 * mount, link, route and firewall rule, ip_forward, the lab's files and
 * cgroups, and every process in another PID namespace or named nspawn.
 */
export interface HostSnapshot {
  mounts: string[];
  links: string[];
  routes: string[];
  nftRuleset: string[];
  ipForward: string;
  files: string[];
  cgroups: string[];
  processes: string[];
}

async function listTree(dir: string, prefix = ''): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = join(prefix, e.name);
    out.push(rel);
    if (e.isDirectory()) out.push(...(await listTree(join(dir, e.name), rel)));
  }
  return out;
}

async function processes(): Promise<string[]> {
  const ownNs = await readlink('/proc/self/ns/pid');
  const out: string[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = await readFile(`/proc/${e}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      // A zombie is already dead; its parent (here PID 1) reaps it shortly.
      if (state === 'Z') continue;
      const ns = await readlink(`/proc/${e}/ns/pid`);
      if (ns !== ownNs || comm === 'systemd-nspawn') {
        // Which lab's machine it runs in, so another lab's processes (which
        // start and stop on their own) are not taken for this lab's traces.
        const lab = /\/k8s-ha-lab\/([^/\n]+)/.exec(await readFile(`/proc/${e}/cgroup`, 'utf8').catch(() => ''))?.[1];
        out.push(`${e} ${comm}${lab ? ` lab=${lab}` : ''}`);
      }
    } catch {
      // exited while we looked
    }
  }
  return out.sort();
}

export async function snapshotHost(env: NodeJS.ProcessEnv = process.env): Promise<HostSnapshot> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const links = JSON.parse((await run(['ip', '-j', 'link'])).stdout || '[]') as { ifname: string; master?: string }[];
  const routes = JSON.parse((await run(['ip', '-j', 'route', 'show', 'table', 'all'])).stdout || '[]') as { dst?: string; dev?: string; table?: string }[];
  const nft = await run(['nft', 'list', 'ruleset'], { allowFailure: true });
  const cgroups: string[] = [];
  for (const r of cgroupRoots()) {
    // Every hierarchy (each v1 controller): the lab's own tree in full, and
    // the top level, where a kubelet that escaped its machine's cgroup
    // would leave `kubepods` (or runc a container's cgroup).
    if (existsSync(join(r, 'k8s-ha-lab'))) cgroups.push(...(await listTree(join(r, 'k8s-ha-lab'), join(r, 'k8s-ha-lab'))));
    for (const e of await readdir(r, { withFileTypes: true }).catch(() => [])) if (e.isDirectory() && e.name !== 'k8s-ha-lab') cgroups.push(join(r, e.name));
  }
  return {
    mounts: mountinfo.split('\n').filter(Boolean).map((l) => {
      const f = l.split(' ');
      const dash = f.indexOf('-');
      return `${f[4]} ${f[dash + 1]} ${f[dash + 2]}`;
    }).sort(),
    links: links.map((l) => `${l.ifname}${l.master ? ` master ${l.master}` : ''}`).sort(),
    routes: routes.map((r) => `${r.table ?? 'main'} ${r.dst ?? '?'} ${r.dev ?? ''}`).sort(),
    nftRuleset: nft.stdout.split('\n').map((l) => l.trim()).filter(Boolean),
    ipForward: (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim(),
    // The image cache is meant to stay; only what is new or gone there counts.
    // Lock files come and go with whoever runs; they are not the lab's traces.
    files: [...(await listTree(stateRoot(env))).filter((f) => !/^\.[^/]*\.lock$/.test(f)).map((f) => `state/${f}`), ...(await readdir(join(cacheDir(env), 'images')).catch(() => [])).map((f) => `cache/images/${f}`)].sort(),
    cgroups: cgroups.sort(),
    processes: await processes(),
  };
}

/** What differs between two snapshots, one line per difference; empty when none. */
export function diffSnapshots(before: HostSnapshot, after: HostSnapshot): string[] {
  const out: string[] = [];
  // Labs that were up before: their machines' processes come and go by themselves.
  const labOf = (x: string): string | undefined => / lab=(\S+)$/.exec(x)?.[1];
  const otherLabs = new Set(before.processes.map(labOf).filter((x): x is string => Boolean(x)));
  const othersProcess = (x: string): boolean => otherLabs.has(labOf(x) ?? '');
  // Likewise their cgroups: kubelets and systemd inside them make and remove cgroups all the time.
  const cgLab = (x: string): string | undefined => /\/k8s-ha-lab\/([^/]+)\/./.exec(x)?.[1];
  const labsBefore = new Set(before.cgroups.map(cgLab).filter((x): x is string => Boolean(x)));
  const othersCgroup = (x: string): boolean => labsBefore.has(cgLab(x) ?? '');
  for (const key of ['mounts', 'links', 'routes', 'nftRuleset', 'files', 'cgroups', 'processes'] as const) {
    const b = new Set(before[key]);
    const a = new Set(after[key]);
    for (const x of a) if (!b.has(x) && !(key === 'processes' && othersProcess(x)) && !(key === 'cgroups' && othersCgroup(x))) out.push(`${key}: left behind: ${x}`);
    // A process that ended on its own is no trace of the lab.
    if (key !== 'processes') for (const x of b) if (!a.has(x) && !(key === 'cgroups' && othersCgroup(x))) out.push(`${key}: gone: ${x}`);
  }
  if (before.ipForward !== after.ipForward) out.push(`ip_forward: was ${before.ipForward}, now ${after.ipForward}`);
  return out;
}
