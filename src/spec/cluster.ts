/**
 * The resolved cluster: what the rest of k8s-ha works from. Defaults are
 * filled in, durations are milliseconds, each host carries its effective SSH
 * settings, secrets are `Secret`s (or a "generate" marker for the engine's
 * state file), and the API address is decided once here.
 */
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { Secret } from '../util/secret.js';
import { error, warning, type Diagnostic } from './diagnostics.js';
import { parseDuration } from './duration.js';
import { ENV_REF_PATTERN, ROLES, type ClusterFile, type Role } from './schema.js';

/**
 * Where a secret comes from. `generate` is filled by the engine from (or
 * into) the state file beside the cluster file; `file` is read at run time.
 */
export type SecretRef =
  | { source: 'generate' }
  | { source: 'env'; name: string; value: Secret }
  | { source: 'file'; path: string }
  | { source: 'literal'; value: Secret };

export interface HostSsh {
  user: string;
  port: number;
  /** Absolute when given with ~ and HOME was known. */
  keyFile?: string;
  /** Use the SSH agent; true when no keyFile is given unless said otherwise. */
  agent: boolean;
  connectTimeoutMs: number;
}

export interface ClusterHost {
  name: string;
  address: string;
  /** In the canonical order loadbalancer, datastore, server, agent. */
  roles: Role[];
  ssh: HostSsh;
  sudo: {
    /** Default: true when the SSH user is not root. */
    enabled: boolean;
    passwordEnv?: string;
    /** Read from passwordEnv at load time; absent when unset (sudo must then not ask). */
    password?: Secret;
  };
  labels: Record<string, string>;
  taints: string[];
  nodeIP?: string;
}

export interface VirtualIp {
  address: string;
  interface: string;
  routerId: number;
  /** Priority of the first load-balancer host; the second gets 50 less. */
  priority: number;
  advertIntervalMs: number;
  unicast: boolean;
  /** false: nopreempt, the VIP stays where it is when the first host returns. */
  preempt: boolean;
  authPass?: Secret;
}

export interface LoadBalancer {
  kind: 'nginx' | 'haproxy';
  port: number;
  deploy: 'package' | 'docker';
  timeouts: { connectMs: number; idleMs: number };
  /** activeCheck: k8s-ha-lbcheck beside nginx marks servers failing /ping down (nginx OSS checks only passively). */
  nginx: { maxFails: number; failTimeoutMs: number; activeCheck: boolean };
  healthCheck: { path: string; intervalMs: number; fall: number; rise: number };
  virtualIP?: VirtualIp;
}

export interface Datastore {
  kind: 'mariadb';
  port: number;
  database: string;
  user: string;
  password: SecretRef;
  tls: { enabled: boolean };
  maxConnections: number;
  /** Present only when Galera is enabled; always single-writer. */
  galera?: Galera;
  /** Scheduled backups on the datastore host (the writer); absent when not asked for. */
  backup?: DatastoreBackup;
}

export interface Galera {
  mode: 'single-writer';
  /** The data node the load balancer prefers; the others are its backups. */
  writer: string;
  /** The garbd host, when there is one. */
  arbitrator?: string;
  /** Each data node's own MariaDB port; the load balancer listens on datastore.port. */
  nodePort: number;
  /** The HTTP health check on each data node (200 = Synced and Primary). */
  checkPort: number;
  /** evs.suspect_timeout. */
  suspectTimeoutMs: number;
  /** The load balancers' hold-down after the writer is lost (0: none). */
  writerHoldMs: number;
  /** Replication and state transfers over TLS, with k8s-ha's CA (cluster/galera-tls.ts). */
  tls: boolean;
  /** HAProxy peers' port between the load balancers. */
  peerPort: number;
  /** The user accepted that k8s-ha has not proven every fault safe. */
  experimental: boolean;
}

export interface DatastoreBackup {
  /** systemd OnCalendar= expression. */
  schedule: string;
  keep: number;
  dir: string;
  /** When status calls the newest backup stale. */
  staleAfterMs: number;
  /** age recipients every scheduled archive is encrypted to; empty: not encrypted. */
  recipients: string[];
}

const PERIOD_MS: Record<string, number> = { minutely: 60_000, hourly: 3_600_000, daily: 86_400_000, weekly: 7 * 86_400_000, monthly: 31 * 86_400_000 };

/** Twice the schedule's period when it is one of systemd's shorthands, else 48 h. */
export function defaultStaleAfterMs(schedule: string): number {
  return 2 * (PERIOD_MS[schedule.trim().toLowerCase()] ?? 86_400_000);
}

export type FlagValue = string | number | boolean | string[];

export interface K3s {
  version?: string;
  /** Set only when no version is pinned; "stable" when neither is given. */
  channel?: string;
  token: SecretRef;
  agentToken?: SecretRef;
  clusterCidr: string;
  serviceCidr: string;
  clusterDns: string;
  clusterDomain: string;
  disable: string[];
  serverTaints: string[];
  /** The user's names plus the API address, without duplicates. */
  tlsSan: string[];
  serverArgs: Record<string, FlagValue>;
  agentArgs: Record<string, FlagValue>;
  install: { source: 'download' | 'local'; path?: string; airgapImages?: string };
  flannelBackend: 'vxlan' | 'host-gw' | 'wireguard-native' | 'none';
  secretsEncryption: boolean;
}

export interface MetalLB {
  version: string;
  manifest?: { file?: string; sha256?: string };
  pools: { name: string; addresses: string[]; autoAssign: boolean }[];
  l2Advertisement: boolean;
}

/** waits: bounds of apply's waits, in ms (defaults 5m, 5m, 5m, 10s, 60s and 45s). */
export interface Waits {
  serverReadyMs: number;
  agentReadyMs: number;
  metallbReadyMs: number;
  /** How long a load balancer's connections to a server it holds out get to end before they are closed (default 10s). */
  lbDrainMs: number;
  /** Before a drain: how long kube-controller-manager and kube-scheduler may take to have a renewing leader (default 60s). */
  leaderElectionMs: number;
  /** A server or agent wait gives up when what it watches has not changed for this long. */
  noProgressMs: number;
}

export interface Cluster {
  apiVersion: 'k8s-ha/v1';
  name: string;
  /** The hosts the cluster is made of: every host of the file but those with `remove: true`. */
  hosts: ClusterHost[];
  /**
   * Hosts to take out of the cluster (`remove: true`, or `k8s-ha node
   * remove NAME`): no phase of apply builds anything for them, the removal
   * phases (phases/node-removal.ts) take them apart. Empty when none.
   */
  removing: ClusterHost[];
  /** The address clients and agents use: the virtual IP, else the load-balancer host's address. */
  apiAddress: string;
  apiPort: number;
  /** https://apiAddress:apiPort */
  apiServerUrl: string;
  loadBalancer: LoadBalancer;
  datastore: Datastore;
  k3s: K3s;
  /** Absent when the section is missing or disabled. */
  metallb?: MetalLB;
  waits: Waits;
  /** The cluster file's `verify` section (empty when absent). */
  verify: { image?: string };
  /** The `upgrade` section: agents upgraded at once, a count or a percentage (default 1). */
  upgrade: { agentBatch: number | `${number}%` };
}

export interface ResolveContext {
  env: Readonly<Record<string, string | undefined>>;
  /** Directory relative file references are resolved against. */
  baseDir: string;
}

const envRefRe = new RegExp(ENV_REF_PATTERN);
// No config format or DSN a secret goes into carries these (render/common.ts assertNoControlChars).
const CONTROL_CHAR = /[\u0000-\u001f\u007f]/;

/** `${ENV:X}`, `${env:DB-PASS}`, `$env:X`, `{env:X}`: meant as a reference, but not one. */
const nearRefRe = /\$\{|\$env:|^\{\s*env\s*:/i;

/**
 * A value that was meant as `${env:NAME}` but is mistyped would otherwise
 * become the password itself, silently. Returns true (and reports it) then.
 */
function mistypedRef(value: string, path: string, out: Diagnostic[]): boolean {
  if (envRefRe.test(value) || !nearRefRe.test(value)) return false;
  out.push(
    error(
      path,
      `${JSON.stringify(value)} looks like a secret reference but is not one`,
      'write ${env:NAME}: "env" in lower case, NAME of letters, digits and _ not starting with a digit (e.g. ${env:DB_PASS}); or use {file: PATH}',
    ),
  );
  return true;
}

function envName(ref: string): string {
  return ref.slice('${env:'.length, -1);
}

/**
 * Resolve "generate" | "${env:NAME}" | {file} | literal. A missing variable
 * is an error at `path`; a literal is allowed only where `literal` says so.
 */
export function resolveSecretRef(
  value: string | { file: string },
  path: string,
  ctx: ResolveContext,
  out: Diagnostic[],
  literal: 'allowed' | 'warn' = 'warn',
): SecretRef {
  if (typeof value === 'object') return { source: 'file', path: absolute(value.file, ctx) };
  if (value === 'generate') return { source: 'generate' };
  if (mistypedRef(value, path, out)) return { source: 'literal', value: new Secret('') };
  if (envRefRe.test(value)) {
    const name = envName(value);
    const v = ctx.env[name];
    if (v === undefined || v === '') {
      const orGenerate = literal === 'allowed' ? '' : ', or use "generate"';
      out.push(error(path, `environment variable ${name} is not set`, `export ${name}=... before running k8s-ha${orGenerate}`));
    } else if (CONTROL_CHAR.test(v)) {
      out.push(error(path, `environment variable ${name} holds a newline or another control character`, `export ${name} with the secret alone, on one line`));
    }
    return { source: 'env', name, value: new Secret(v ?? '') };
  }
  if (CONTROL_CHAR.test(value)) out.push(error(path, 'the secret holds a newline or another control character', 'write it on one line'));
  if (literal === 'warn') {
    out.push(warning(path, 'a literal secret is written in the cluster file', 'use "generate", "${env:NAME}" or {file: PATH} so the file can be shared and committed'));
  }
  return { source: 'literal', value: new Secret(value) };
}

function absolute(p: string, ctx: ResolveContext): string {
  return isAbsolute(p) ? p : resolvePath(ctx.baseDir, p);
}

function expandHome(p: string | undefined, ctx: ResolveContext): string | undefined {
  if (p === undefined) return undefined;
  const home = ctx.env.HOME;
  if (home && (p === '~' || p.startsWith('~/'))) return home + p.slice(1);
  return p;
}

/** Durations were checked by the schema; 0 is unreachable in practice. */
function ms(text: string): number {
  return parseDuration(text) ?? 0;
}

/**
 * Build the Cluster from a file that passed the schema (defaults applied).
 * Secret references are resolved here, so problems with them land in `out`.
 */
export function resolveCluster(file: ClusterFile, ctx: ResolveContext, out: Diagnostic[]): Cluster {
  const allHosts: ClusterHost[] = file.hosts.map((h, i) => {
    const s = { ...file.ssh, ...(h.ssh ?? {}) };
    const keyFile = expandHome(s.keyFile, ctx);
    const sudoEnv = h.sudo?.passwordEnv;
    const sudoPassword = sudoEnv !== undefined ? ctx.env[sudoEnv] : undefined;
    if (sudoEnv !== undefined && (sudoPassword === undefined || sudoPassword === '')) {
      out.push(
        warning(`hosts[${i}].sudo.passwordEnv`, `environment variable ${sudoEnv} is not set`, `export ${sudoEnv}=... before plan or apply, or allow passwordless sudo for ${s.user}`),
      );
    }
    // sudo -S reads the password as one line from standard input.
    if (sudoPassword && /[\n\r\u0000]/.test(sudoPassword)) {
      out.push(error(`hosts[${i}].sudo.passwordEnv`, `environment variable ${sudoEnv} holds a line break: sudo reads one line`, `export ${sudoEnv} with the password alone`));
    }
    return {
      name: h.name,
      address: h.address,
      roles: ROLES.filter((r) => h.roles.includes(r)),
      ssh: {
        user: s.user,
        port: s.port,
        ...(keyFile !== undefined ? { keyFile } : {}),
        agent: s.agent ?? keyFile === undefined,
        connectTimeoutMs: ms(s.connectTimeout),
      },
      sudo: {
        enabled: h.sudo?.enabled ?? s.user !== 'root',
        ...(sudoEnv !== undefined ? { passwordEnv: sudoEnv } : {}),
        ...(sudoPassword ? { password: new Secret(sudoPassword) } : {}),
      },
      labels: { ...(h.labels ?? {}) },
      taints: [...(h.taints ?? [])],
      ...(h.nodeIP !== undefined ? { nodeIP: h.nodeIP } : {}),
    };
  });
  const hosts = allHosts.filter((_, i) => file.hosts[i]!.remove !== true);
  const removing = allHosts.filter((_, i) => file.hosts[i]!.remove === true);

  const lb = file.loadBalancer;
  const vip = lb.virtualIP;
  const lbHosts = hosts.filter((h) => h.roles.includes('loadbalancer'));
  const apiAddress = vip?.address ?? lbHosts[0]?.address ?? '';
  const servers = hosts.filter((h) => h.roles.includes('server'));
  const dsHosts = hosts.filter((h) => h.roles.includes('datastore'));

  const loadBalancer: LoadBalancer = {
    kind: lb.kind,
    port: lb.port,
    deploy: lb.deploy,
    timeouts: { connectMs: ms(lb.timeouts.connect), idleMs: ms(lb.timeouts.idle) },
    nginx: { maxFails: lb.nginx.maxFails, failTimeoutMs: ms(lb.nginx.failTimeout), activeCheck: lb.nginx.activeCheck },
    healthCheck: { path: lb.healthCheck.path, intervalMs: ms(lb.healthCheck.interval), fall: lb.healthCheck.fall, rise: lb.healthCheck.rise },
    ...(vip
      ? {
          virtualIP: {
            address: vip.address,
            interface: vip.interface,
            routerId: vip.routerId,
            priority: vip.priority,
            advertIntervalMs: ms(vip.advertInterval),
            unicast: vip.unicast,
            preempt: vip.preempt,
            ...(vip.authPass !== undefined
              ? (() => {
                  const path = 'loadBalancer.virtualIP.authPass';
                  // Any text but an env reference is the password itself ("generate" included).
                  const ref: SecretRef = envRefRe.test(vip.authPass) || nearRefRe.test(vip.authPass)
                    ? resolveSecretRef(vip.authPass, path, ctx, out, 'allowed')
                    : { source: 'literal', value: new Secret(vip.authPass) };
                  if (ref.source !== 'env' && ref.source !== 'literal') return {};
                  if (ref.value.reveal().length > 8) {
                    out.push(warning(path, 'keepalived uses only the first 8 characters of auth_pass', 'shorten it to 8 characters so the password you wrote is the one in use'));
                  }
                  return { authPass: ref.value };
                })()
              : {}),
          },
        }
      : {}),
  };

  const ds = file.datastore;
  const g = ds.galera;
  const galera: Galera | undefined = g?.enabled
    ? {
        mode: 'single-writer',
        writer: g.writer ?? dsHosts[0]?.name ?? '',
        ...(g.arbitrator !== undefined ? { arbitrator: g.arbitrator } : {}),
        nodePort: g.nodePort,
        checkPort: g.checkPort,
        suspectTimeoutMs: ms(g.suspectTimeout),
        writerHoldMs: ms(g.writerHold),
        tls: g.tls.enabled,
        peerPort: g.peerPort,
        experimental: g.experimental,
      }
    : undefined;
  const datastore: Datastore = {
    kind: ds.kind,
    port: ds.port,
    database: ds.database,
    user: ds.user,
    password: resolveSecretRef(ds.password, 'datastore.password', ctx, out, 'warn'),
    tls: { enabled: ds.tls.enabled },
    // kine keeps up to 20 idle connections per server and opens more under
    // load; leave room for that, for admin sessions, and never go below
    // MariaDB's own default.
    maxConnections: ds.maxConnections ?? Math.max(151, servers.length * 100 + 50),
    ...(galera ? { galera } : {}),
    ...(ds.backup
      ? {
          backup: {
            schedule: ds.backup.schedule,
            keep: ds.backup.keep,
            dir: ds.backup.dir.replace(/\/+$/, '') || '/',
            staleAfterMs: ds.backup.staleAfter !== undefined ? (parseDuration(ds.backup.staleAfter) ?? defaultStaleAfterMs(ds.backup.schedule)) : defaultStaleAfterMs(ds.backup.schedule),
            recipients: [...new Set(ds.backup.recipients ?? [])],
          },
        }
      : {}),
  };

  const k = file.k3s;
  const tlsSan = [...new Set([...(apiAddress ? [apiAddress] : []), ...k.tlsSan])];
  const k3s: K3s = {
    ...(k.version !== undefined ? { version: k.version } : { channel: k.channel ?? 'stable' }),
    token: resolveSecretRef(k.token, 'k3s.token', ctx, out),
    ...(k.agentToken !== undefined ? { agentToken: resolveSecretRef(k.agentToken, 'k3s.agentToken', ctx, out) } : {}),
    clusterCidr: k.clusterCidr,
    serviceCidr: k.serviceCidr,
    clusterDns: k.clusterDns,
    clusterDomain: k.clusterDomain,
    disable: [...k.disable],
    serverTaints: [...k.serverTaints],
    tlsSan,
    serverArgs: { ...k.serverArgs },
    agentArgs: { ...k.agentArgs },
    install: {
      source: k.install.source,
      ...(k.install.path !== undefined ? { path: absolute(k.install.path, ctx) } : {}),
      ...(k.install.airgapImages !== undefined ? { airgapImages: absolute(k.install.airgapImages, ctx) } : {}),
    },
    flannelBackend: k.flannelBackend,
    secretsEncryption: k.secretsEncryption,
  };

  const m = file.metallb;
  const metallb: MetalLB | undefined =
    m && m.enabled
      ? {
          version: m.version,
          ...(m.manifest
            ? {
                manifest: {
                  ...(m.manifest.file !== undefined ? { file: absolute(m.manifest.file, ctx) } : {}),
                  ...(m.manifest.sha256 !== undefined ? { sha256: m.manifest.sha256 } : {}),
                },
              }
            : {}),
          pools: m.pools.map((p) => ({ name: p.name, addresses: [...p.addresses], autoAssign: p.autoAssign })),
          l2Advertisement: m.l2Advertisement,
        }
      : undefined;

  return {
    apiVersion: 'k8s-ha/v1',
    name: file.name,
    hosts,
    removing,
    apiAddress,
    apiPort: lb.port,
    apiServerUrl: `https://${apiAddress}:${lb.port}`,
    loadBalancer,
    datastore,
    k3s,
    ...(metallb ? { metallb } : {}),
    waits: {
      serverReadyMs: ms(file.waits.serverReady),
      agentReadyMs: ms(file.waits.agentReady),
      metallbReadyMs: ms(file.waits.metallbReady),
      lbDrainMs: ms(file.waits.lbDrain),
      leaderElectionMs: ms(file.waits.leaderElection),
      noProgressMs: ms(file.waits.noProgress),
    },
    verify: file.verify?.image !== undefined ? { image: file.verify.image } : {},
    upgrade: { agentBatch: (file.upgrade?.agentBatch ?? 1) as number | `${number}%` },
  };
}

// --- lookups the later stages use

export function hasRole(host: ClusterHost, role: Role): boolean {
  return host.roles.includes(role);
}

/** Hosts holding `role`, in file order. */
export function hostsWithRole(c: Cluster, role: Role): ClusterHost[] {
  return c.hosts.filter((h) => h.roles.includes(role));
}

export function hostByName(c: Cluster, name: string): ClusterHost | undefined {
  return c.hosts.find((h) => h.name === name);
}

/** The datastore host the servers connect to: the only datastore host, or with Galera the preferred writer. */
export function datastoreEndpointHost(c: Cluster): ClusterHost | undefined {
  const name = c.datastore.galera?.writer;
  return name !== undefined ? hostByName(c, name) : hostsWithRole(c, 'datastore')[0];
}

/** The datastore endpoint host's name as a phase's targets (backup, restore, reset): one, or none when there is no such host. */
export function datastoreEndpointTargets(c: Cluster): string[] {
  const ds = datastoreEndpointHost(c);
  return ds ? [ds.name] : [];
}

/**
 * The address and port in k3s's datastore-endpoint. With Galera it is the
 * load balancer (its virtual IP when there is one) on datastore.port, which
 * sends every connection to the one writer: never a data node itself, or a
 * server would keep writing to a node the others have left.
 */
export function datastoreEndpointAddress(c: Cluster): { host: string; port: number } | undefined {
  if (c.datastore.galera) return c.apiAddress ? { host: c.apiAddress, port: c.datastore.port } : undefined;
  const h = hostsWithRole(c, 'datastore')[0];
  return h ? { host: h.address, port: c.datastore.port } : undefined;
}

/** The Galera data nodes: every datastore host, in file order (empty without Galera). */
export function galeraNodes(c: Cluster): ClusterHost[] {
  return c.datastore.galera ? hostsWithRole(c, 'datastore') : [];
}

/** Every resolved secret of the cluster, for masking output. */
export function clusterSecrets(c: Cluster): Secret[] {
  const out: Secret[] = [];
  const add = (r: SecretRef | undefined) => {
    if (r && (r.source === 'env' || r.source === 'literal')) out.push(r.value);
  };
  add(c.datastore.password);
  add(c.k3s.token);
  add(c.k3s.agentToken);
  if (c.loadBalancer.virtualIP?.authPass) out.push(c.loadBalancer.virtualIP.authPass);
  for (const h of c.hosts) if (h.sudo.password) out.push(h.sudo.password);
  return out;
}
