/**
 * Values that pass the schema's types but that a renderer, a daemon or the
 * SSH library would refuse or misread later: durations of zero or of days,
 * health-check paths nginx's checker or HAProxy cannot carry, node labels
 * Kubernetes or the kubelet refuses, characters a config format cannot hold,
 * ports and addresses that collide on one host. Each is caught here, with the
 * path to change, so `validate` refuses what `plan` or `apply` would.
 */
import { error, formatPath, warning, type Diagnostic } from './diagnostics.js';
import { formatDuration, parseDuration } from './duration.js';
import { isIpv4 } from './net.js';
import type { ClusterFile } from './schema.js';

/** Inclusive bounds of a duration field, in ms, with why they are what they are. */
interface Bound {
  min: number;
  max: number;
  /** Why a value outside the bounds is wrong (said after the value). */
  why: string;
}

const S = 1000;
const M = 60 * S;
const H = 60 * M;

/**
 * The bounds. SSH: ssh2 reads a connect timeout of 0 as "wait forever", so a
 * frozen host would hang every command. The LB's figures go into nginx and
 * HAProxy (k8s-ha's renderers take 1 ms to 7 days) and into the checker's
 * curl --max-time, which must leave a TLS handshake time to finish.
 */
export const DURATION_BOUNDS = {
  sshConnect: { min: 100, max: 5 * M, why: 'an SSH connect timeout must be from 100ms to 5m (0 would make ssh2 wait forever on a host that does not answer)' },
  lbConnect: { min: 10, max: M, why: 'the load balancer\'s connect timeout must be from 10ms to 1m (nginx\'s own 60 s already stalls every try at a cut-off server)' },
  lbIdle: { min: S, max: 7 * 24 * H, why: 'the idle timeout must be from 1s to 7 days (shorter cuts kubectl watches, logs -f and exec)' },
  failTimeout: { min: 100, max: H, why: 'nginx fail_timeout must be from 100ms to 1h' },
  checkInterval: { min: 100, max: M, why: 'the health-check interval must be from 100ms to 1m (each check is a TLS handshake that must finish within one interval)' },
  ready: { min: 10 * S, max: 2 * H, why: 'a readiness wait must be from 10s to 2h (a k3s start takes tens of seconds; more than hours is no bound)' },
  noProgress: { min: 5 * S, max: H, why: 'the no-progress bound must be from 5s to 1h (a probe round trip takes seconds)' },
} as const satisfies Record<string, Bound>;

function durationProblem(path: string, text: string | undefined, b: Bound): Diagnostic[] {
  if (text === undefined) return [];
  const ms = parseDuration(text);
  if (ms === undefined || (ms >= b.min && ms <= b.max)) return [];
  const to = ms < b.min ? formatDuration(b.min) : formatDuration(b.max);
  return [error(path, `${text}: ${b.why}`, `set ${path} to ${to} or ${ms < b.min ? 'more' : 'less'}`)];
}

/** SSH connect timeouts, top level and per host. */
export function checkSshValues(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  out.push(...durationProblem('ssh.connectTimeout', f.ssh.connectTimeout, DURATION_BOUNDS.sshConnect));
  out.push(...userProblem('ssh.user', f.ssh.user));
  f.hosts.forEach((h, i) => {
    out.push(...durationProblem(`hosts[${i}].ssh.connectTimeout`, h.ssh?.connectTimeout, DURATION_BOUNDS.sshConnect));
    out.push(...userProblem(`hosts[${i}].ssh.user`, h.ssh?.user));
  });
  return out;
}

// POSIX portable user names (useradd's default rule, with upper case and '.').
const USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;

function userProblem(path: string, user: string | undefined): Diagnostic[] {
  if (user === undefined || USER.test(user)) return [];
  return [error(path, `${JSON.stringify(user)} is not a user name`, 'write the login name: letters, digits, _ . -, at most 32 characters, not starting with a digit or -')];
}

/**
 * What the load balancer's renderers and the checker accept. A path goes
 * into one HAProxy word (`option httpchk GET PATH`) and into the nginx
 * checker's curl URL inside a shell script: letters, digits and a few
 * punctuation marks only; `?`, `=`, `&` and `%` only where HAProxy carries it.
 */
export const HEALTH_PATH = { haproxy: /^\/[A-Za-z0-9._~/?=&%-]*$/, nginx: /^\/[A-Za-z0-9._~/-]*$/ } as const;
// Linux IFNAMSIZ is 16 with the NUL; keepalived and `ip` take the name as one word.
export const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

export function checkLoadBalancerValues(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  const lb = f.loadBalancer;
  out.push(...durationProblem('loadBalancer.timeouts.connect', lb.timeouts.connect, DURATION_BOUNDS.lbConnect));
  out.push(...durationProblem('loadBalancer.timeouts.idle', lb.timeouts.idle, DURATION_BOUNDS.lbIdle));
  out.push(...durationProblem('loadBalancer.nginx.failTimeout', lb.nginx.failTimeout, DURATION_BOUNDS.failTimeout));
  out.push(...durationProblem('loadBalancer.healthCheck.interval', lb.healthCheck.interval, DURATION_BOUNDS.checkInterval));

  // Every program that requests the path: HAProxy's own check, the checker
  // beside nginx (package deploy only), keepalived's track script (with a VIP).
  const path = lb.healthCheck.path;
  const readers: [RegExp, string][] = [];
  if (lb.kind === 'haproxy') readers.push([HEALTH_PATH.haproxy, "HAProxy's check, which takes letters, digits and . _ ~ / ? = & % -"]);
  if (lb.kind === 'nginx' && lb.nginx.activeCheck && lb.deploy === 'package') readers.push([HEALTH_PATH.nginx, "nginx's checker (k8s-ha-lbcheck), which takes letters, digits and . _ ~ / - (no query string)"]);
  if (lb.virtualIP) readers.push([HEALTH_PATH.nginx, "keepalived's track script (k8s-ha-lb-alive), which takes letters, digits and . _ ~ / - (no query string)"]);
  const refusedBy = readers.find(([re]) => !re.test(path));
  if (refusedBy) {
    out.push(error('loadBalancer.healthCheck.path', `${JSON.stringify(path)} cannot be carried by ${refusedBy[1]}`, 'use /ping (k3s answers it without credentials), or a path of those characters'));
  }

  const vip = lb.virtualIP;
  if (vip) {
    if (!INTERFACE_NAME.test(vip.interface)) {
      out.push(error('loadBalancer.virtualIP.interface', `${JSON.stringify(vip.interface)} is not a Linux interface name`, 'write the name `ip link` shows, for example eth0 (1-15 letters, digits, _ . -)'));
    }
    const ms = parseDuration(vip.advertInterval);
    if (ms !== undefined) {
      // Whole seconds are VRRP v2 (1-255 s); anything else is v3, in centiseconds up to 40.95 s.
      const v2 = ms % 1000 === 0 && ms > 0;
      if (v2 ? ms > 255 * S : ms < 10 || ms > 40_950 || ms % 10 !== 0) {
        out.push(
          error(
            'loadBalancer.virtualIP.advertInterval',
            `${vip.advertInterval}: keepalived takes an advert interval of 10ms to 40.95s in steps of 10ms, or whole seconds up to 255s`,
            'use 500ms (the default: failover in about 1.5 s) or 1s',
          ),
        );
      }
    }
    // keepalived splits on blanks and gives # ! { } " $ @ a meaning (render/keepalived.ts).
    if (vip.authPass !== undefined && !vip.authPass.startsWith('${') && !/^[A-Za-z0-9_.+=%:,/*^-]{1,8}$/.test(vip.authPass)) {
      const v3 = ms !== undefined && ms % 1000 !== 0;
      if (!v3) {
        out.push(error('loadBalancer.virtualIP.authPass', 'the VRRP password can hold only letters, digits and _ . + = % : , / * ^ - (at most 8: keepalived uses no more)', 'choose up to 8 of those characters, or remove authPass to have one generated'));
      }
    }
  }
  return out;
}

/**
 * Kubernetes label syntax (apimachinery's IsQualifiedName / IsValidLabelValue):
 * an optional DNS-subdomain prefix of at most 253 characters and '/', then a
 * name of at most 63; a value of at most 63, possibly empty.
 */
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/**
 * The kubelet refuses to start with a --node-labels key in the kubernetes.io
 * or k8s.io namespaces unless it is one of these (the kubelet's own rule
 * since Kubernetes 1.16; node-role.kubernetes.io is not among them).
 */
const KUBELET_ALLOWED_LABELS = new Set([
  'beta.kubernetes.io/arch',
  'beta.kubernetes.io/instance-type',
  'beta.kubernetes.io/os',
  'failure-domain.beta.kubernetes.io/region',
  'failure-domain.beta.kubernetes.io/zone',
  'kubernetes.io/arch',
  'kubernetes.io/hostname',
  'kubernetes.io/os',
  'node.kubernetes.io/instance-type',
  'topology.kubernetes.io/region',
  'topology.kubernetes.io/zone',
]);
const KUBELET_ALLOWED_PREFIXES = ['kubelet.kubernetes.io', 'node.kubernetes.io'];

/** Why a label key is refused; null when Kubernetes and the kubelet take it. */
export function labelKeyProblem(key: string): string | null {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : '';
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (slash >= 0 && !LABEL_PREFIX.test(prefix)) return `its prefix "${prefix}" is not a DNS subdomain (lower-case letters, digits, '-' and '.', at most 253)`;
  if (!LABEL_NAME.test(name)) return `its name "${name}" is not 1-63 letters, digits, '-', '_' or '.' starting and ending with a letter or digit`;
  const reserved = ['kubernetes.io', 'k8s.io'].some((d) => prefix === d || prefix.endsWith(`.${d}`));
  if (reserved && !KUBELET_ALLOWED_LABELS.has(key) && !KUBELET_ALLOWED_PREFIXES.some((p) => prefix === p || prefix.endsWith(`.${p}`))) {
    return `the kubelet will not start with a --node-labels key in the kubernetes.io or k8s.io namespaces (node-role.kubernetes.io too), except ${KUBELET_ALLOWED_PREFIXES.map((p) => `${p}/*`).join(', ')} and the well-known topology, os, arch and instance-type labels`;
  }
  return null;
}

export function labelValueProblem(value: string): string | null {
  return LABEL_VALUE.test(value) ? null : 'a label value is at most 63 letters, digits, \'-\', \'_\' or \'.\', starting and ending with a letter or digit (or empty)';
}

/** Node labels and taints; ports and addresses one host would hold twice. */
export function checkHostValues(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  f.hosts.forEach((h, i) => {
    for (const [key, value] of Object.entries(h.labels ?? {})) {
      const path = formatPath(['hosts', i, 'labels', key]);
      const k = labelKeyProblem(key);
      if (k) out.push(error(path, `label key "${key}" is refused: ${k}`, 'use a key of your own, such as example.com/role or role (a node-role label can be added later with kubectl label)'));
      const v = typeof value === 'string' ? labelValueProblem(value) : null;
      if (v) out.push(error(path, `label value ${JSON.stringify(value)} is refused: ${v}`, 'shorten it or replace the other characters with -'));
    }
    (h.taints ?? []).forEach((t, j) => {
      const kv = t.slice(0, t.lastIndexOf(':'));
      const eq = kv.indexOf('=');
      const key = eq < 0 ? kv : kv.slice(0, eq);
      const value = eq < 0 ? '' : kv.slice(eq + 1);
      const why = labelKeyProblem(key) ?? labelValueProblem(value);
      if (why) out.push(error(`hosts[${i}].taints[${j}]`, `taint "${t}" is refused: ${why}`, 'a taint key and value follow the rules of label keys and values'));
    });
    // MariaDB binds to the datastore host's address and allows each server by
    // its address; keepalived's unicast peers are addresses too.
    if (!isIpv4(h.address)) {
      const needs = h.roles.includes('datastore')
        ? 'MariaDB binds to the datastore host\'s address and k3s\'s DSN names it'
        : h.roles.includes('server')
          ? 'the datastore allows each k3s server by its address'
          : h.roles.includes('loadbalancer') && f.loadBalancer.virtualIP?.unicast
            ? 'keepalived sends unicast adverts to the load balancers\' addresses'
            : null;
      if (needs) out.push(error(`hosts[${i}].address`, `"${h.address}" is a host name, but ${needs}`, `write ${h.name}'s IPv4 address`));
    }
    // Another host's address as this node's IP: two nodes would claim one address.
    if (h.nodeIP !== undefined) {
      f.hosts.forEach((o, j) => {
        if (j === i) return;
        if (o.address === h.nodeIP) {
          out.push(error(`hosts[${i}].nodeIP`, `node IP ${h.nodeIP} is the address of host "${o.name}" (hosts[${j}])`, `give ${h.name} its own address on the node network, or remove nodeIP to use ${h.address}`));
        } else if (o.nodeIP === h.nodeIP && j < i) {
          out.push(error(`hosts[${i}].nodeIP`, `node IP ${h.nodeIP} is also the node IP of host "${o.name}" (hosts[${j}])`, 'give every node its own address'));
        }
      });
    }
  });
  return out;
}

/** The ports k8s-ha binds on a host against the port its SSH daemon already listens on. */
export function checkPortsAgainstSsh(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  f.hosts.forEach((h, i) => {
    const sshPort = h.ssh?.port ?? f.ssh.port;
    const clash = (what: string, path: string, port: number, fix: string) => {
      if (port === sshPort) out.push(error(path, `host "${h.name}" (hosts[${i}]) already uses port ${port} for SSH, so ${what} cannot listen on it`, fix));
    };
    if (h.roles.includes('loadbalancer')) clash('the load balancer', 'loadBalancer.port', f.loadBalancer.port, 'use port 6443 for the load balancer');
    if (h.roles.includes('datastore')) clash('MariaDB', 'datastore.port', f.datastore.port, 'use port 3306 for MariaDB');
  });
  return out;
}

// Identifiers the datastore renderer takes (render/mariadb.ts): MariaDB would
// take more, but these also go unquoted into the DSN and into SQL.
const DB_IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The database and user names, and the address k3s's DSN names. */
export function checkDatastoreValues(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  if (!DB_IDENT.test(f.datastore.database)) out.push(error('datastore.database', `"${f.datastore.database}" starts with a digit`, 'start the database name with a letter or _'));
  if (!DB_IDENT.test(f.datastore.user)) out.push(error('datastore.user', `"${f.datastore.user}" starts with a digit`, 'start the user name with a letter or _'));
  return out;
}

/** Characters a config line cannot carry, in the string values of k3s flags. */
export function checkFlagValues(f: ClusterFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const field of ['serverArgs', 'agentArgs'] as const) {
    for (const [key, value] of Object.entries(f.k3s[field])) {
      const values = Array.isArray(value) ? value : [value];
      if (values.some((v) => typeof v === 'string' && CONTROL.test(v))) {
        out.push(error(formatPath(['k3s', field, key]), 'the value holds a newline, tab or other control character', 'write the value on one line; a list repeats the flag'));
      }
    }
  }
  return out;
}

export const CONTROL = /[\u0000-\u001f\u007f]/;

/** The waits' bounds; a no-progress bound at or above a readiness bound never fires first. */
export function checkWaits(f: ClusterFile): Diagnostic[] {
  const w = f.waits;
  const out: Diagnostic[] = [];
  for (const key of ['serverReady', 'agentReady', 'metallbReady'] as const) out.push(...durationProblem(`waits.${key}`, w[key], DURATION_BOUNDS.ready));
  out.push(...durationProblem('waits.noProgress', w.noProgress, DURATION_BOUNDS.noProgress));
  const np = parseDuration(w.noProgress);
  const ready = Math.min(parseDuration(w.serverReady) ?? Infinity, parseDuration(w.agentReady) ?? Infinity);
  if (np !== undefined && np >= ready && !out.length) {
    out.push(warning('waits.noProgress', `${w.noProgress} is not below serverReady/agentReady: a frozen host is noticed only at the overall bound`, 'set it below both, for example 45s'));
  }
  return out;
}
