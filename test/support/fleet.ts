import type { Cluster, ClusterHost } from '../../src/spec/cluster.js';
import { parseCluster, type Env } from '../../src/spec/load.js';
import { ConnectionError, type Host } from '../../src/transport/host.js';
import { INSTALLED_PACKAGES_PATH } from '../../src/transport/os.js';
import type { MemoryHost } from '../../src/transport/memory.js';
import { standInVersion } from './offline-example.js';
import { BOOKWORM, debianMachine, type DebianPackage, type Machine } from './fleet-debian.js';
import { attachK3s, K3sModel, type K3sModelOptions } from './fleet-k3s.js';
import { FakeKube, type KubeOptions } from './fleet-kube.js';
import { attachMariadb, fakeMariadb, type FakeMariadb } from './fleet-mariadb.js';

/**
 * One simulated fleet for a cluster file: every host a bare Debian 12
 * machine in memory that answers every command the full pipeline sends
 * (cluster/pipelines.ts), the way the real programs would. Hosts differ only
 * in what was installed, written and started on them, never by their role,
 * so a phase that forgets a step fails here as it would on a real machine.
 * Deterministic (no clock, no randomness) and fast.
 *
 *   const fleet = simulatedFleet(readFileSync(file, 'utf8'));
 *   await ClusterRun.open(file, { connect: fleet.connect })   // or runCli(..., { hooks: { open: { connect } } })
 *
 * The parts: fleet-debian.ts (apt, systemd, checkers, ip), fleet-mariadb.ts
 * (MariaDB and openssl), fleet-k3s.ts (servers, agents), fleet-kube.ts (the
 * API: MetalLB, Nodes).
 */
export interface FleetOptions {
  /** For `${env:NAME}` in the cluster file text. Default: none. */
  env?: Env;
  /** Packages installed on every host before the run (as `apt-get install` would). Default: none. */
  preinstalled?: string[];
  /** Packages added to (or replacing) bookworm's in the catalog. */
  catalog?: Record<string, DebianPackage>;
  /** Prefix length of each host's address on its interface. Default 24. */
  prefixLength?: number;
  /** VERSION() of the MariaDB that mariadb-server installs. Default 10.11.14-MariaDB-0+deb12u2. */
  mariadbVersion?: string;
  k3s?: K3sModelOptions;
  kube?: KubeOptions;
}

export interface Fleet {
  cluster: Cluster;
  /** Each host by name: its packages, files, services, command log and writes. */
  hosts: Map<string, MemoryHost>;
  machines: Map<string, Machine>;
  /** For ClusterRun.open / the CLI's RunHooks; a host missing from the fleet (added to the file later) is created bare. */
  connect: (h: ClusterHost) => Promise<Host>;
  /** The MariaDB of a host (empty until mariadb-server runs there). */
  mariadb(host: string): FakeMariadb;
  k3s: K3sModel;
  kube: FakeKube;
  /** Daemons running with a config that changed on disk since they read it: `host unit: path`. */
  stale(): string[];
  /** Starts, restarts, reloads and stops of every unit so far: `host/unit` -> count. */
  serviceEvents(): Record<string, number>;
  /**
   * The connection to `host` drops as the next command matching `match` is
   * sent: that command never runs, and every later call fails until
   * `hosts.get(host).reconnect()` (MemoryHost.disconnectAfter).
   */
  dropConnectionAt(host: string, match: RegExp): void;
  /**
   * `host` freezes right after the next command matching `match` ran (and
   * `more` calls after it): from then on nothing it runs answers, and every
   * call fails as k8s-ha sees a frozen machine once SSH's keepalives give up
   * (a lost connection).
   */
  freezeAfter(host: string, match: RegExp, more?: number): void;
  /**
   * The machine of that name re-installed: a bare Debian machine under the
   * same name and address (empty disk; a new SSH host key where the
   * transport checks one). The cluster's Node object of that name stays.
   */
  recreate(host: string): Machine;
  /** Every unit start, restart, reload and stop on every machine, in order: `host how unit`. */
  timeline: string[];
}

/** The fleet for a cluster file (its text) or a loaded cluster. */
export function simulatedFleet(cluster: string | Cluster, opts: FleetOptions = {}): Fleet {
  const spec = typeof cluster === 'string' ? parseText(cluster, opts.env ?? {}) : cluster;
  const catalog = { ...BOOKWORM, ...opts.catalog };
  const iface = spec.loadBalancer.virtualIP?.interface ?? 'eth0';
  const machines = new Map<string, Machine>();
  const hosts = new Map<string, MemoryHost>();
  const dbs = new Map<Machine, FakeMariadb>();
  const mariadbOf = (m: Machine): FakeMariadb => {
    let db = dbs.get(m);
    if (!db) dbs.set(m, (db = fakeMariadb(opts.mariadbVersion)));
    return db;
  };
  const byAddress = (address: string) => [...machines.values()].find((m) => m.host.address === address);
  const vipHolder = (address: string): Machine | undefined => {
    let best: { m: Machine; priority: number } | undefined;
    for (const m of machines.values()) {
      if (!m.host.services.get('keepalived')?.active) continue;
      const conf = m.running.get('keepalived')?.get('/etc/keepalived/keepalived.conf') ?? '';
      if (!conf.includes(`${address}/`)) continue;
      const priority = Number(/priority (\d+)/.exec(conf)?.[1] ?? 0);
      if (!best || priority > best.priority) best = { m, priority };
    }
    return best?.m;
  };
  const k3s = new K3sModel({ machines: () => machines.values(), byAddress, mariadb: mariadbOf, vipHolder }, opts.k3s);
  const kube = new FakeKube(opts.kube, k3s.nodeReady);
  kube.onNodeDeleted = k3s.nodeDeleted;
  kube.hasNodePassword = k3s.hasNodePassword;
  // A Node is listed while its k3s runs and passed the node-password check (k3s#802); a deleted one only once its k3s starts again.
  kube.listNodes = () => [...machines.keys()].filter((n) => !kube.deleted(n) && k3s.nodeReady(n) !== undefined);
  // A kubelet reports the version of the binary its k3s last started from (the stand-in binaries echo it).
  const binaryVersion = (m: Machine): string | undefined => standInVersion(m.text('/usr/local/bin/k3s'));
  const startedFrom = new Map<string, string>();
  kube.kubeletVersion = (n) => startedFrom.get(n) ?? (machines.get(n) && binaryVersion(machines.get(n)!)) ?? 'v1.31.4+k3s1';
  const timeline: string[] = [];
  const mariadbVersionPkg = opts.mariadbVersion ? `1:${opts.mariadbVersion.replace(/-MariaDB/, '')}` : undefined;
  if (mariadbVersionPkg) catalog['mariadb-server'] = { ...catalog['mariadb-server']!, version: mariadbVersionPkg };

  const add = (name: string, address: string): Machine => {
    const m = debianMachine({ name, address }, iface, opts.prefixLength ?? 24, catalog);
    m.hooks.push((_m, unit, how) => {
      timeline.push(`${name} ${how} ${unit}`);
      // A kubelet registers its Node when it starts (a deleted Node comes back only then).
      if ((unit === 'k3s' || unit === 'k3s-agent') && how !== 'stop' && how !== 'reload') {
        kube.registering(name);
        const v = binaryVersion(m);
        if (v) startedFrom.set(name, v);
      }
    });
    const vip = spec.loadBalancer.virtualIP?.address;
    m.host.handle(/^ip -o -4 addr show dev \S+$/, (cmd) => m.ipAddr(cmd.text.split(' ').pop()!, vip && vipHolder(vip) === m ? [vip] : []));
    attachMariadb(m, mariadbOf(m));
    attachK3s(m, k3s, (text, stdin) => kube.kubectl(text, stdin));
    if (opts.preinstalled?.length) {
      m.aptInstall(opts.preinstalled, catalog);
      // There before k8s-ha: not in its record of what it installed.
      m.host.files.delete(INSTALLED_PACKAGES_PATH);
    }
    machines.set(name, m);
    hosts.set(name, m.host);
    return m;
  };
  for (const h of spec.hosts) add(h.name, h.address);

  return {
    cluster: spec,
    hosts,
    machines,
    connect: async (h) => (machines.get(h.name) ?? add(h.name, h.address)).host,
    recreate: (name) => {
      return add(name, machines.get(name)!.host.address);
    },
    timeline,
    mariadb: (name) => mariadbOf(machines.get(name)!),
    k3s,
    kube,
    stale: () => [...machines.values()].flatMap((m) => m.stale().map((s) => `${m.host.name} ${s}`)),
    dropConnectionAt: (name, match) => {
      const h = machines.get(name)!.host;
      let dropped = false;
      h.handle(
        (t) => !dropped && match.test(t),
        (cmd) => {
          dropped = true;
          h.disconnectAfter(0);
          throw new ConnectionError(name, `${h.address}:22`, `running \`${cmd.text}\``, 'the connection was lost (simulated)', 'call reconnect() on the memory host');
        },
      );
    },
    freezeAfter: (name, match, more = 0) => {
      const h = machines.get(name)!.host;
      let frozen = false;
      // Seen while the matching command is dispatched (after it was counted): it still runs, the next call fails.
      h.handle(
        (t) => {
          if (!frozen && match.test(t)) {
            frozen = true;
            h.disconnectAfter(more);
          }
          return false;
        },
        () => ({ code: 0, stdout: '', stderr: '' }),
      );
    },
    serviceEvents: () => {
      const out: Record<string, number> = {};
      for (const m of machines.values()) for (const [u, s] of m.host.services) out[`${m.host.name}/${u}`] = s.starts + s.restarts + s.reloads + s.stops;
      return out;
    },
  };
}

function parseText(text: string, env: Env): Cluster {
  const r = parseCluster(text, '/simulated/cluster.yaml', env);
  if (!r.cluster) throw new Error(`simulatedFleet: the cluster file does not load:\n${r.diagnostics.map((d) => `  ${d.path}: ${d.message}`).join('\n')}`);
  return r.cluster;
}
