/**
 * Cross-field checks: what the schema cannot say about one field alone. They
 * run on a file that passed the schema (defaults applied) and add to the same
 * list, each with the dotted path of the field to change and how to change it.
 * The reasons come from FACTS.md: most of these break a cluster at apply time
 * or, worse, later.
 */
import { error, formatPath, warning, type Diagnostic } from './diagnostics.js';
import { checkDatastoreValues, checkFlagValues, checkWaits, checkHostValues, checkLoadBalancerValues, checkPortsAgainstSsh, checkSshValues } from './checks-values.js';
import { parseDuration } from './duration.js';
import { K3S_AGENT_FLAGS, K3S_SERVER_FLAGS, MANAGED_AGENT_FLAGS, MANAGED_SERVER_FLAGS, suggestFlag, type ManagedFlag } from './k3s-flags.js';
import { intToIpv4, ipv4ToInt, parseCidr, parsePoolEntry, rangeContains, rangesOverlap, cidrHasHostBits, type Ipv4Range } from './net.js';
import type { ClusterFile, HostFile, Role } from './schema.js';
import { checkEncryptTo } from '../backup/crypt.js';

type Indexed = { host: HostFile; i: number };

/** The hosts with `role` that stay in the cluster (`remove: true` hosts are on their way out). */
function withRole(f: ClusterFile, role: Role): Indexed[] {
  return f.hosts.map((host, i) => ({ host, i })).filter(({ host }) => host.roles.includes(role) && host.remove !== true);
}

/**
 * The checks by section, each with the sections it reads. When the schema
 * already refused part of the file, only the groups whose inputs are sound
 * run, so a broken file still gets every problem that can be told apart.
 */
export const CHECK_GROUPS: readonly { needs: readonly (keyof ClusterFile)[]; run: (f: ClusterFile) => Diagnostic[] }[] = [
  { needs: ['hosts'], run: checkHosts },
  { needs: ['hosts', 'datastore'], run: checkRemovals },
  { needs: ['hosts', 'loadBalancer', 'datastore'], run: checkLoadBalancer },
  { needs: ['hosts', 'datastore'], run: checkDatastore },
  { needs: ['k3s'], run: checkK3s },
  { needs: ['hosts', 'k3s', 'metallb'], run: checkK3sAgainstHosts },
  { needs: ['k3s', 'metallb'], run: checkMetallb },
  { needs: ['hosts', 'metallb'], run: checkPoolsAgainstHosts },
  // Values a renderer, a daemon or ssh2 would refuse or misread (checks-values.ts).
  { needs: ['ssh', 'hosts'], run: checkSshValues },
  { needs: ['loadBalancer'], run: checkLoadBalancerValues },
  { needs: ['hosts', 'loadBalancer'], run: checkHostValues },
  { needs: ['ssh', 'hosts', 'loadBalancer', 'datastore'], run: checkPortsAgainstSsh },
  { needs: ['datastore'], run: checkDatastoreValues },
  { needs: ['k3s'], run: checkFlagValues },
  { needs: ['waits'], run: checkWaits },
];

/** Run every cross-field check on a file that passed the schema. */
export function crossFieldChecks(f: ClusterFile): Diagnostic[] {
  return CHECK_GROUPS.flatMap((g) => g.run(f));
}

function checkHosts(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  const names = new Map<string, number>();
  const addresses = new Map<string, number>();
  f.hosts.forEach((h, i) => {
    const n = names.get(h.name);
    if (n !== undefined) out.push(error(`hosts[${i}].name`, `host name "${h.name}" is already used by hosts[${n}]`, 'give every host a unique name; it becomes the Kubernetes node name'));
    else names.set(h.name, i);
    const a = addresses.get(h.address);
    if (a !== undefined) out.push(error(`hosts[${i}].address`, `address ${h.address} is already used by hosts[${a}] ("${f.hosts[a]!.name}")`, 'list each machine once and give it all its roles'));
    else addresses.set(h.address, i);

    const k3sNode = h.roles.includes('server') || h.roles.includes('agent');
    if (h.roles.includes('server') && h.roles.includes('agent')) {
      out.push(error(`hosts[${i}].roles`, `host "${h.name}" is both a server and an agent`, 'keep only server: a k3s server also runs workloads unless serverTaints keep them off'));
    }
    if (!k3sNode) {
      for (const field of ['labels', 'taints', 'nodeIP'] as const) {
        const v = h[field];
        const given = Array.isArray(v) ? v.length > 0 : typeof v === 'object' ? Object.keys(v).length > 0 : v !== undefined;
        if (given) out.push(warning(`hosts[${i}].${field}`, `host "${h.name}" is not a k3s node, so ${field} is not used`, `remove ${field}, or give the host the server or agent role`));
      }
    }
  });

  const servers = withRole(f, 'server');
  const agents = withRole(f, 'agent');
  const leaving = f.hosts.filter((h) => h.remove === true && h.roles.includes('server'));
  if (servers.length === 0 && leaving.length) {
    out.push(
      error(
        'hosts',
        `remove: true on ${leaving.map((h) => h.name).join(', ')} would remove the last server: the cluster's API and every object in the datastore would have no server left`,
        'keep at least one server (add the new server first, apply, then remove the old one); to take the whole cluster down use `k8s-ha reset`',
      ),
    );
  } else if (servers.length === 0) {
    const also = agents.length ? ` (the ${agents.length} agent${agents.length > 1 ? 's have' : ' has'} nothing to join)` : '';
    out.push(error('hosts', `no host has the server role${also}`, 'add server to the roles of at least two hosts'));
  } else if (servers.length === 1) {
    out.push(
      warning(
        'hosts',
        `only one server${leaving.length ? ` once ${leaving.map((h) => h.name).join(', ')} ${leaving.length === 1 ? 'is' : 'are'} removed` : ''}: the Kubernetes API is not highly available`,
        'add a second server host; with the external datastore two servers are enough',
      ),
    );
  }
  return out;
}

/**
 * `remove: true` (and `k8s-ha node remove NAME`, which sets it for one run):
 * what the removal phases (phases/node-removal.ts) can take apart is a k3s
 * node. A load balancer or datastore host holds what every server needs;
 * retiring one is a change of topology, not a node leaving.
 */
function checkRemovals(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  f.hosts.forEach((h, i) => {
    if (h.remove !== true) return;
    const infra = h.roles.filter((r) => r === 'loadbalancer' || r === 'datastore');
    if (infra.length) {
      const only = !h.roles.includes('server') && !h.roles.includes('agent');
      out.push(
        error(
          `hosts[${i}].remove`,
          `host "${h.name}" is a ${infra.join(' and ')} host; remove: true takes out k3s nodes (servers and agents) only${only ? '' : `, and ${h.name} also carries the cluster's ${infra.join(' and ')}`}`,
          only
            ? `to retire it, give its role to another host first and apply; then delete ${h.name} from hosts: (and its line under hosts: in the state file)`
            : `move the ${infra.join(' and ')} role to another host first and apply; then remove ${h.name}`,
        ),
      );
    }
    const g = f.datastore.galera;
    if (g?.enabled && g.arbitrator === h.name) {
      out.push(error(`hosts[${i}].remove`, `host "${h.name}" runs the Galera arbitrator (datastore.galera.arbitrator)`, `move the arbitrator to another host (datastore.galera.arbitrator) in the same apply, or before`));
    }
  });
  return out;
}

/** Ports k3s itself binds on its nodes, which a load balancer there would collide with. */
const K3S_NODE_PORTS: Record<number, string> = {
  6443: 'the k3s API server',
  6444: "k3s's client-side load balancer",
  10250: 'the kubelet',
};

function checkLoadBalancer(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  const lbs = withRole(f, 'loadbalancer');
  const vip = f.loadBalancer.virtualIP;
  const port = f.loadBalancer.port;
  if (lbs.length === 0) {
    out.push(error('hosts', 'no host has the loadbalancer role: clients and agents need one API address', 'add loadbalancer to a host\'s roles (it may share a host with the datastore)'));
  }
  for (const extra of lbs.slice(2)) {
    out.push(error(`hosts[${extra.i}].roles`, `host "${extra.host.name}" is a third load-balancer host; at most two share the virtual IP`, 'remove loadbalancer from this host\'s roles'));
  }
  if (lbs.length === 2 && !vip) {
    out.push(error('loadBalancer', 'two load-balancer hosts but no virtual IP: clients would need one address to reach either', 'add loadBalancer.virtualIP with an unused address and the interface that carries it, or keep one load-balancer host'));
  }
  if (vip && lbs.length < 2) {
    out.push(error('loadBalancer.virtualIP', `a virtual IP needs two load-balancer hosts, found ${lbs.length}`, 'give a second host the loadbalancer role, or remove virtualIP and use the load-balancer host\'s address'));
  }
  if (vip?.authPass !== undefined && vip.advertInterval !== undefined && (parseDuration(vip.advertInterval) ?? 1000) % 1000 !== 0) {
    out.push(warning('loadBalancer.virtualIP.authPass', `with advertInterval ${vip.advertInterval} keepalived speaks VRRP v3, which has no password: authPass is not used`, 'remove authPass, or set advertInterval to whole seconds (failover then takes about 3 s per second of interval)'));
  }
  if (vip) {
    f.hosts.forEach((h) => {
      if (h.address === vip.address || h.nodeIP === vip.address) {
        out.push(error('loadBalancer.virtualIP.address', `virtual IP ${vip.address} is the address of host "${h.name}"`, 'pick an unused address on the load-balancer hosts\' network'));
      }
    });
  }
  if (f.datastore.galera?.enabled) {
    // One writer needs an active Galera-aware check that marks nodes: HAProxy's
    // own, or k8s-ha-lbcheck beside nginx (package deploy only).
    if (f.loadBalancer.deploy !== 'package') {
      out.push(
        error(
          'loadBalancer.deploy',
          `a Galera datastore is routed by the load balancer to one writer, which k8s-ha does with HAProxy or with nginx and k8s-ha-lbcheck installed from packages; this file has deploy: ${f.loadBalancer.deploy}`,
          'set loadBalancer.deploy: package',
        ),
      );
    } else if (f.loadBalancer.kind === 'nginx' && !f.loadBalancer.nginx.activeCheck) {
      out.push(
        error(
          'loadBalancer.nginx.activeCheck',
          'a Galera datastore behind nginx is routed to one writer by k8s-ha-lbcheck (it reads each node\'s Galera check and marks every other node down), and this file turns it off',
          'remove loadBalancer.nginx.activeCheck: false, or use loadBalancer.kind: haproxy',
        ),
      );
    } else if (f.loadBalancer.kind === 'nginx') {
      out.push(
        warning(
          'loadBalancer.kind',
          'the Galera route through nginx (k8s-ha-lbcheck) is less proven than HAProxy\'s: in the lab it lost one acknowledged create in 14 failover drills before a fix, and none in the 2 since (README, "Galera datastore")',
          'use loadBalancer.kind: haproxy for a Galera datastore unless you need nginx',
        ),
      );
    }
  }
  for (const { host, i } of lbs) {
    const k3sNode = host.roles.includes('server') || host.roles.includes('agent');
    const clash = K3S_NODE_PORTS[port];
    if (k3sNode && clash) {
      out.push(error(`hosts[${i}].roles`, `host "${host.name}" runs both the load balancer and ${clash}, and both bind port ${port}`, 'move the loadbalancer role to a host that is not a k3s node, or set loadBalancer.port to a free port such as 7443'));
    }
    if (host.roles.includes('datastore') && port === f.datastore.port) {
      out.push(error('loadBalancer.port', `host "${host.name}" runs both the load balancer and MariaDB, and both bind port ${port}`, 'use port 6443 for the load balancer'));
    }
  }
  return out;
}

function checkDatastore(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  const ds = withRole(f, 'datastore');
  const g = f.datastore.galera;
  const galeraOn = g?.enabled === true;
  if (ds.length === 0) {
    out.push(error('hosts', 'no host has the datastore role: the servers need a MariaDB to share', 'add datastore to a host\'s roles (it may share a host with the load balancer)'));
  }
  if (!galeraOn) {
    for (const extra of ds.slice(1)) {
      out.push(error(`hosts[${extra.i}].roles`, `host "${extra.host.name}" is a second datastore host, but Galera is not enabled`, 'keep one datastore host, or set datastore.galera.enabled: true (single writer)'));
    }
  }
  if (g && g.mode === 'multi-writer') {
    out.push(error('datastore.galera.mode', 'multi-writer Galera is not supported by k3s: Galera changes auto_increment_increment, and kine needs revisions that grow by one', 'use mode: single-writer (every server writes to one node, the others stand by)'));
  }
  if (galeraOn) out.push(...checkGalera(f, ds));
  // The schema checks the shape; age itself checks the key (bech32 checksum).
  for (const [i, r] of (f.datastore.backup?.recipients ?? []).entries()) {
    try {
      checkEncryptTo({ recipients: [r] });
    } catch (e) {
      out.push(error(`datastore.backup.recipients[${i}]`, `${r} is not a valid age recipient (${(e as Error).message.replace(/^--recipient \S+: /, '')})`, 'copy the public key again: `age-keygen -y KEYFILE` prints it'));
    }
  }
  const servers = withRole(f, 'server').length;
  const mc = f.datastore.maxConnections;
  if (mc !== undefined && mc < servers * 20 + 10) {
    out.push(warning('datastore.maxConnections', `${mc} connections is tight for ${servers} servers: kine keeps up to 20 idle connections each`, `raise it to at least ${servers * 20 + 10}, or remove it to use the computed default`));
  }
  return out;
}

/** Galera's own rules (FACTS: "Datastore HA with kine"). */
function checkGalera(f: ClusterFile, ds: Indexed[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const g = f.datastore.galera!;
  if (g.experimental !== true) {
    out.push(
      error(
        'datastore.galera.experimental',
        'the Galera datastore is experimental: kine v0.17 reports a create whose INSERT failed as done when its read-back finds no row, and only the load balancers\' hold-downs keep a failover from acknowledging such a lost create (README, "Galera datastore")',
        'read the measured figures in the README; set datastore.galera.experimental: true to use it anyway, or keep one MariaDB',
      ),
    );
  }
  if (ds.length === 1) {
    out.push(error('datastore.galera', 'Galera with one datastore host replicates to nobody', 'give a second host the datastore role (and an arbitrator), or turn Galera off'));
  }
  if (g.writer !== undefined && !ds.some(({ host }) => host.name === g.writer)) {
    out.push(error('datastore.galera.writer', `"${g.writer}" is not a datastore host`, `name one of: ${ds.map(({ host }) => host.name).join(', ') || '(no datastore hosts)'}`));
  }
  if (g.arbitrator !== undefined) {
    const a = f.hosts.find((h) => h.name === g.arbitrator);
    if (!a) out.push(error('datastore.galera.arbitrator', `"${g.arbitrator}" is not a host of the cluster file`, 'name a host that is not a datastore host (an agent or a small third machine)'));
    else if (a.roles.includes('datastore')) out.push(error('datastore.galera.arbitrator', `"${g.arbitrator}" is a datastore host: an arbitrator there adds a vote that dies with the node`, 'run garbd on a machine that holds no data node (an agent or a small third machine)'));
  }
  const voters = ds.length + (g.arbitrator !== undefined ? 1 : 0);
  if (ds.length > 1 && voters % 2 === 0) {
    out.push(
      warning(
        'datastore.galera',
        `${voters} Galera voters: when half of them are lost (or cut off from the other half) neither side has a quorum and every write stops`,
        g.arbitrator === undefined ? 'add datastore.galera.arbitrator (garbd on an agent or a third machine), or a third datastore host' : 'remove the arbitrator or add a datastore host, so the number of voters is odd',
      ),
    );
  }
  for (const { host, i } of ds) {
    if (host.roles.includes('loadbalancer') && g.nodePort === f.datastore.port) {
      out.push(error('datastore.galera.nodePort', `host "${host.name}" runs the load balancer's datastore listener and a data node, and both would bind port ${g.nodePort}`, `leave nodePort at 3307 (or any port but datastore.port ${f.datastore.port}) (hosts[${i}])`));
    }
  }
  if (g.checkPort === g.nodePort || g.checkPort === f.datastore.port) {
    out.push(error('datastore.galera.checkPort', `port ${g.checkPort} is already the datastore's`, 'use 9200 (the usual Galera check port) or another free port'));
  }
  const hold = parseDuration(g.writerHold ?? '1500ms') ?? 0;
  if (hold > 10_000) {
    out.push(error('datastore.galera.writerHold', `${g.writerHold} of refused connections after every writer loss adds that much to each failover's write gap`, 'keep it between 1s and 3s (it only has to outlast kine\'s read-back right after a switch); 0s turns it off'));
  }
  const lbPorts = new Map<number, string>([[f.loadBalancer.port, 'loadBalancer.port'], [f.datastore.port, 'datastore.port'], [g.nodePort, 'datastore.galera.nodePort'], [g.checkPort, 'datastore.galera.checkPort']]);
  const peerClash = lbPorts.get(g.peerPort ?? 10000);
  if (peerClash !== undefined) {
    out.push(error('datastore.galera.peerPort', `port ${g.peerPort ?? 10000} is already ${peerClash} on the load-balancer hosts`, 'use 10000 (HAProxy peers) or another free port'));
  }
  if (f.datastore.tls.enabled) {
    out.push(error('datastore.tls.enabled', 'TLS from k3s to a Galera datastore is not provided yet: each node would issue its own CA, and k3s trusts one', 'turn datastore.tls off with Galera (keep the datastore network private), or use a single MariaDB with TLS'));
  }
  return out;
}

function checkK3s(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  const k = f.k3s;
  if (k.version !== undefined && k.channel !== undefined) {
    out.push(error('k3s.channel', 'both k3s.version and k3s.channel are set', 'keep version (pinned releases make upgrades deliberate) and remove channel'));
  } else if (k.version === undefined) {
    out.push(warning('k3s.version', `k3s is not pinned: hosts installed at different times may get different releases from the ${k.channel ?? 'stable'} channel`, 'set k3s.version, for example v1.37.2+k3s1'));
  }

  const clusterNet = parseCidr(k.clusterCidr);
  const serviceNet = parseCidr(k.serviceCidr);
  for (const [field, text] of [['clusterCidr', k.clusterCidr], ['serviceCidr', k.serviceCidr]] as const) {
    if (cidrHasHostBits(text)) {
      const r = parseCidr(text)!;
      out.push(error(`k3s.${field}`, `${text} has host bits set`, `write the network address: ${intToIpv4(r.first)}/${text.split('/')[1]}`));
    }
  }
  if (clusterNet && serviceNet && rangesOverlap(clusterNet, serviceNet)) {
    out.push(error('k3s.serviceCidr', `service network ${k.serviceCidr} overlaps the pod network ${k.clusterCidr}`, 'use separate networks, for example 10.42.0.0/16 for pods and 10.43.0.0/16 for services'));
  }
  const dns = ipv4ToInt(k.clusterDns);
  if (serviceNet && dns !== undefined && !rangeContains(serviceNet, dns)) {
    out.push(error('k3s.clusterDns', `cluster DNS ${k.clusterDns} is outside the service network ${k.serviceCidr}`, `pick an address inside ${k.serviceCidr}, usually ${intToIpv4(serviceNet.first + 10)}`));
  }
  if (k.install.source === 'local' && k.install.path === undefined) {
    out.push(error('k3s.install.path', 'install.source is local but no k3s binary is given', 'set k3s.install.path to a k3s binary on this machine, or use source: download'));
  }
  if (k.install.source === 'download' && k.install.path !== undefined) {
    out.push(warning('k3s.install.path', 'install.path is ignored when install.source is download', 'set source: local to upload this binary, or remove path'));
  }

  out.push(...checkExtraArgs('serverArgs', 'server', k.serverArgs, K3S_SERVER_FLAGS, MANAGED_SERVER_FLAGS));
  out.push(...checkExtraArgs('agentArgs', 'agent', k.agentArgs, K3S_AGENT_FLAGS, MANAGED_AGENT_FLAGS));
  return out;
}

/** The pod and service networks against the LAN, and server taints against the agents. */
function checkK3sAgainstHosts(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  const k = f.k3s;
  const clusterNet = parseCidr(k.clusterCidr);
  const serviceNet = parseCidr(k.serviceCidr);
  for (const [field, net, label] of [['clusterCidr', clusterNet, 'pod'], ['serviceCidr', serviceNet, 'service']] as const) {
    if (!net) continue;
    for (const [addr, what] of knownAddresses(f)) {
      const n = ipv4ToInt(addr);
      if (n !== undefined && rangeContains(net, n)) {
        out.push(error(`k3s.${field}`, `${label} network ${k[field]} contains ${what} (${addr})`, 'choose a network that does not overlap your LAN, or change that address'));
      }
    }
  }

  const agents = withRole(f, 'agent').length;
  const metallbOn = f.metallb !== undefined && f.metallb.enabled;
  k.serverTaints.forEach((t, i) => {
    const effect = t.slice(t.lastIndexOf(':') + 1);
    if (agents > 0 || effect === 'PreferNoSchedule') return;
    if (metallbOn && t.startsWith('CriticalAddonsOnly') && effect === 'NoExecute') {
      out.push(error(`k3s.serverTaints[${i}]`, 'servers are tainted CriticalAddonsOnly:NoExecute and there are no agents, so MetalLB\'s speakers cannot be scheduled', 'add agent hosts, or remove this taint'));
    } else {
      out.push(warning(`k3s.serverTaints[${i}]`, `servers are tainted ${effect} and there are no agents: ordinary workloads have nowhere to run`, 'add agent hosts, or remove this taint'));
    }
  });

  return out;
}

/** Extra k3s flags: known to k3s, not one k8s-ha sets from its own field, written without dashes. */
function checkExtraArgs(
  field: 'serverArgs' | 'agentArgs',
  kind: 'server' | 'agent',
  args: Record<string, unknown>,
  known: readonly string[],
  managed: Readonly<Record<string, ManagedFlag>>,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const raw of Object.keys(args)) {
    const path = formatPath(['k3s', field, raw]);
    const name = raw.replace(/^-+/, '');
    if (name !== raw && known.includes(name)) {
      out.push(error(path, `k3s ${kind} flag '${raw}' is written with dashes`, `write it as '${name}', the way config.yaml names it`));
      continue;
    }
    const m = managed[name];
    if (m) {
      const where = m.field ? `set ${m.field} instead` : 'remove it';
      out.push(error(path, `k3s ${kind} flag '${name}' is managed by k8s-ha: ${m.reason}`, where));
      continue;
    }
    if (!known.includes(name)) {
      const s = suggestFlag(name, known);
      out.push(
        error(
          path,
          `unknown k3s ${kind} flag '${name}'${s ? ` (did you mean '${s}'?)` : ''}`,
          s ? `rename it to '${s}'` : `see \`k3s ${kind} --help\` for the flags of the pinned release`,
        ),
      );
    }
  }
  return out;
}

/** Addresses of the hosts and the virtual IP, with what they belong to (for messages). */
function knownAddresses(f: ClusterFile): [string, string][] {
  const out: [string, string][] = [];
  for (const h of f.hosts) {
    out.push([h.address, `the address of host "${h.name}"`]);
    if (h.nodeIP !== undefined && h.nodeIP !== h.address) out.push([h.nodeIP, `the node IP of host "${h.name}"`]);
  }
  // The load balancer section may have failed the schema (these checks do
  // not need it otherwise): take the virtual IP only when it is text.
  const lb: unknown = f.loadBalancer;
  const vip = lb !== null && typeof lb === 'object' ? (lb as { virtualIP?: { address?: unknown } }).virtualIP : undefined;
  if (vip !== null && typeof vip === 'object' && typeof vip.address === 'string') out.push([vip.address, 'the virtual IP']);
  return out;
}

function checkMetallb(f: ClusterFile): Diagnostic[] {
  const m = f.metallb;
  if (!m || !m.enabled) return [];
  const out: Diagnostic[] = [];
  if (!f.k3s.disable.includes('servicelb')) {
    out.push(error('k3s.disable', 'servicelb is left on while MetalLB is enabled: both would answer for LoadBalancer Services', 'add servicelb to k3s.disable'));
  }
  const seen: { path: string; text: string; range: Ipv4Range }[] = [];
  const poolNames = new Map<string, number>();
  const clusterNet = parseCidr(f.k3s.clusterCidr);
  const serviceNet = parseCidr(f.k3s.serviceCidr);
  m.pools.forEach((pool, p) => {
    const prev = poolNames.get(pool.name);
    if (prev !== undefined) out.push(error(`metallb.pools[${p}].name`, `pool name "${pool.name}" is already used by metallb.pools[${prev}]`, 'give every pool a unique name'));
    else poolNames.set(pool.name, p);
    pool.addresses.forEach((text, a) => {
      const path = `metallb.pools[${p}].addresses[${a}]`;
      const range = parsePoolEntry(text);
      if (!range) {
        out.push(error(path, `"${text}" is not an address range or CIDR`, 'write a range such as 192.168.0.170-192.168.0.175 or a CIDR'));
        return;
      }
      if (range.first > range.last) {
        out.push(error(path, `range "${text}" is reversed: its first address comes after its last`, 'write the lower address first'));
        return;
      }
      for (const other of seen) {
        if (rangesOverlap(range, other.range)) {
          out.push(error(path, `"${text}" overlaps ${other.path} (${other.text})`, 'give every pool its own addresses'));
        }
      }
      for (const [net, label, cidr] of [[clusterNet, 'pod', f.k3s.clusterCidr], [serviceNet, 'service', f.k3s.serviceCidr]] as const) {
        if (net && rangesOverlap(range, net)) {
          out.push(error(path, `"${text}" overlaps the ${label} network ${cidr}`, 'use addresses of the hosts\' LAN that no one else hands out'));
        }
      }
      seen.push({ path, text, range });
    });
  });
  return out;
}

/** Pools must not hand out an address a host or the virtual IP already has. */
function checkPoolsAgainstHosts(f: ClusterFile): Diagnostic[] {
  const m = f.metallb;
  if (!m || !m.enabled) return [];
  const out: Diagnostic[] = [];
  m.pools.forEach((pool, p) =>
    pool.addresses.forEach((text, a) => {
      const range = parsePoolEntry(text);
      if (!range || range.first > range.last) return; // reported by checkMetallb
      for (const [addr, what] of knownAddresses(f)) {
        const n = ipv4ToInt(addr);
        if (n !== undefined && rangeContains(range, n)) {
          out.push(error(`metallb.pools[${p}].addresses[${a}]`, `pool "${pool.name}" (${text}) contains ${what} (${addr})`, "use free addresses outside the hosts', the virtual IP's and the DHCP server's"));
        }
      }
    }),
  );
  return out;
}
