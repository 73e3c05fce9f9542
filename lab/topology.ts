import { stringify } from 'yaml';
import type { LabComponents } from './components.js';
import { LabUsageError } from './errors.js';
import { nth, ipToNumber, type Cidr } from './network.js';
import type { Role } from './state.js';

/** The k3s release the lab's cluster file pins: the one the lab's k3s is built from (its `--version`). */
export const LAB_K3S_VERSION = 'v1.37.2+k3s1';

/** What to build. Defaults give the seed topology (examples/seed.yaml). */
export interface TopologyOptions {
  /** k3s servers. Default: 2. */
  servers?: number;
  /** k3s agents. Default: 3. */
  agents?: number;
  /** A second load-balancer machine `lb2`, and a virtual IP (keepalived) in the cluster file. Default: false. */
  lb2?: boolean;
  /**
   * The topology where any one machine can die: two infrastructure machines
   * `infra1`/`infra2`, each a load balancer (HAProxy) and a Galera data node,
   * the virtual IP between them, and the arbitrator (garbd) on `agent1`.
   * Needs at least one agent. Default: false.
   */
  galera?: boolean;
}

export interface PlannedMachine {
  name: string;
  address: string;
  roles: Role[];
}

export interface Topology {
  machines: PlannedMachine[];
  /** The API virtual IP when there are two load balancers, else null. */
  virtualIP: string | null;
  /** MetalLB's pool: free addresses of the lab subnet, away from the machines. */
  metallbRange: string;
  gateway: string;
  /** infra1/infra2 as Galera data nodes with the arbitrator on agent1. */
  galera: boolean;
}

export const MAX_SERVERS = 29;
export const MAX_AGENTS = 99;

/**
 * Addresses in the lab subnet: .1 the host's bridge, .5 the virtual IP,
 * .10/.11 the load balancers, .21+ servers, .51+ agents, .200-.219 MetalLB.
 * Fixed offsets keep a machine's address the same whatever the counts.
 */
export function planTopology(subnet: Cidr, o: TopologyOptions = {}): Topology {
  const servers = o.servers ?? 2;
  const agents = o.agents ?? 3;
  const problems: string[] = [];
  if (!Number.isInteger(servers) || servers < 1 || servers > MAX_SERVERS) problems.push(`--servers ${servers}: give a whole number from 1 to ${MAX_SERVERS}`);
  if (!Number.isInteger(agents) || agents < 0 || agents > MAX_AGENTS) problems.push(`--agents ${agents}: give a whole number from 0 to ${MAX_AGENTS}`);
  if (o.galera && o.lb2) problems.push('--galera already has two load balancers (infra1, infra2): leave out --lb2');
  if (o.galera && agents < 1) problems.push('--galera puts the Galera arbitrator on agent1: give --agents 1 or more');
  if (problems.length) throw new LabUsageError(problems.join('\n'));
  const machines: PlannedMachine[] = o.galera
    ? [
        { name: 'infra1', address: nth(subnet, 10), roles: ['loadbalancer', 'datastore'] },
        { name: 'infra2', address: nth(subnet, 11), roles: ['loadbalancer', 'datastore'] },
      ]
    : [{ name: 'infra', address: nth(subnet, 10), roles: ['loadbalancer', 'datastore'] }];
  if (o.lb2) machines.push({ name: 'lb2', address: nth(subnet, 11), roles: ['loadbalancer'] });
  for (let i = 1; i <= servers; i++) machines.push({ name: `server${i}`, address: nth(subnet, 20 + i), roles: ['server'] });
  for (let i = 1; i <= agents; i++) machines.push({ name: `agent${i}`, address: nth(subnet, 50 + i), roles: ['agent'] });
  return {
    machines,
    virtualIP: o.lb2 || o.galera ? nth(subnet, 5) : null,
    galera: o.galera === true,
    metallbRange: `${nth(subnet, 200)}-${nth(subnet, 219)}`,
    gateway: nth(subnet, 1),
  };
}

export interface ClusterFileInput {
  name: string;
  keyFile: string;
  topology: Topology;
  /** The lab's k3s and MetalLB manifest (lab/components.ts); absent parts use k8s-ha's defaults. */
  components?: LabComponents;
}

/** The cluster file for the lab, in the format of examples/seed.yaml. */
export function renderClusterFile(c: ClusterFileInput): string {
  const t = c.topology;
  // One writer behind the load balancer is HAProxy's (writer table, peers, hold-downs).
  const loadBalancer: Record<string, unknown> = { kind: t.galera ? 'haproxy' : 'nginx', port: 6443 };
  if (t.virtualIP) {
    // The router id only has to be unique on the lab's bridge: take it from the VIP.
    loadBalancer.virtualIP = { address: t.virtualIP, interface: 'host0', routerId: (ipToNumber(t.virtualIP) % 254) + 1 };
  }
  const doc = {
    apiVersion: 'k8s-ha/v1',
    name: c.name,
    ssh: { user: 'root', port: 22, keyFile: c.keyFile },
    hosts: t.machines.map((m) => ({ name: m.name, address: m.address, roles: m.roles })),
    loadBalancer,
    datastore: {
      kind: 'mariadb',
      database: 'k3s',
      user: 'k3s',
      password: 'generate',
      ...(t.galera ? { galera: { enabled: true, writer: 'infra1', arbitrator: 'agent1', experimental: true } } : {}),
    },
    k3s: {
      version: LAB_K3S_VERSION,
      token: 'generate',
      disable: ['servicelb', 'traefik'],
      ...(c.components?.k3sBinary
        ? { install: { source: 'local', path: c.components.k3sBinary, ...(c.components.airgapImages ? { airgapImages: c.components.airgapImages } : {}) } }
        : {}),
    },
    metallb: {
      version: 'v0.14.9',
      pools: [{ name: 'default', addresses: [t.metallbRange] }],
      l2Advertisement: true,
      ...(c.components?.metallbManifest ? { manifest: c.components.metallbManifest } : {}),
    },
    ...(c.components?.verifyImage ? { verify: { image: c.components.verifyImage } } : {}),
  };
  const header = [
    `# Written by \`k8s-ha lab up\` for the lab "${c.name}": machines booted on this host`,
    `# (systemd-nspawn) on the lab bridge, gateway ${t.gateway}. \`k8s-ha lab down\` removes them.`,
    ...(c.components?.k3sBinary ? ["# k3s.install points at the lab's k3s (labk3s/): a stand-in built from upstream Kubernetes parts, not k3s."] : []),
    ...(c.components?.airgapImages ? ['# k3s.install.airgapImages: the lab\'s images (labk3s/images/), uploaded to every node as k3s\'s air-gap install does.'] : []),
    ...(c.components?.metallbManifest ? ["# metallb.manifest: the release's metallb-native.yaml as published, from the Go module proxy (GitHub is not reachable here)."] : []),
  ].join('\n');
  return `${header}\n${stringify(doc, { flowCollectionPadding: false })}`;
}

/** Lab names become bridge, cgroup and nftables names: keep them short and plain. */
export function checkLabName(name: string): void {
  if (!/^[a-z][a-z0-9-]{0,10}$/.test(name)) {
    throw new LabUsageError(`--name "${name}": a lab name is 1-11 characters, lowercase letters, digits and '-', starting with a letter (e.g. lab, demo2)`);
  }
}

