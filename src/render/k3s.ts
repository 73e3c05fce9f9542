import { isIPv4, isIPv6 } from 'node:net';
import { parse, stringify } from 'yaml';
import { Secret } from '../util/secret.js';
import {
  RenderInputError,
  SecretRenderOptions,
  assertHost,
  assertIp,
  assertNoControlChars,
  assertPath,
  assertPort,
  byString,
  hostPort,
  isHostname,
  managedHeader,
  secretText,
  sortedUnique,
} from './common.js';
import { UnitEntry, renderEnvFile, renderUnit } from './systemd.js';

/** k3s reads this, plus config.yaml.d/*.yaml. Write it mode 0600: it holds the token. */
export const K3S_CONFIG_PATH = '/etc/rancher/k3s/config.yaml';
export const K3S_BINARY_PATH = '/usr/local/bin/k3s';

/** A value k3s accepts in config.yaml for a flag: repeatable flags are lists. */
export type K3sArgValue = string | number | boolean | string[];

interface K3sCommonInput {
  /** `node-name`; a DNS-1123 name, unique in the cluster. */
  nodeName: string;
  /** `node-ip`: the address other nodes reach this one on (one per IP family). Default: k3s picks the default route's. */
  nodeIp?: string[];
  /** `node-label`, `key=value` each. */
  nodeLabels?: string[];
  /** `node-taint`, `key[=value]:Effect` each. */
  nodeTaints?: string[];
  /**
   * Any other flag by its long name, e.g. {'kubelet-arg': ['max-pods=150']}.
   * Keys this renderer sets from a field are refused here, so a secret or a
   * cluster-critical value cannot slip in past its validation.
   */
  extraArgs?: Record<string, K3sArgValue>;
}

export interface K3sServerConfigInput extends K3sCommonInput {
  role: 'server';
  token: Secret;
  /** `agent-token`: a separate join secret for agents. Default: agents use `token`. */
  agentToken?: Secret;
  /** From datastoreEndpoint() (mariadb.ts). */
  datastoreEndpoint: Secret;
  /** CA that signed the datastore's certificate; set when the datastore uses TLS. */
  datastoreCaFile?: string;
  datastoreCertFile?: string;
  datastoreKeyFile?: string;
  /** LB/VIP address and names, plus any extra names. Must be complete before the first start. */
  tlsSan: string[];
  /** Packaged components to leave out; MetalLB needs 'servicelb'. Default: none. */
  disable?: string[];
  /** k3s default 10.42.0.0/16. */
  clusterCidr?: string;
  /** k3s default 10.43.0.0/16. */
  serviceCidr?: string;
  /** k3s default 10.43.0.10. */
  clusterDns?: string;
  /** k3s default cluster.local. */
  clusterDomain?: string;
  /** k3s default vxlan. */
  flannelBackend?: string;
  /** k3s default false. */
  secretsEncryption?: boolean;
  /** k3s default agent. */
  egressSelectorMode?: 'agent' | 'cluster' | 'pod' | 'disabled';
}

export interface K3sAgentConfigInput extends K3sCommonInput {
  role: 'agent';
  /** The API load balancer (or VIP) agents register through. */
  server: { host: string; port: number };
  /** The server's token or its agent-token. */
  token: Secret;
}

export type K3sConfigInput = K3sServerConfigInput | K3sAgentConfigInput;

// Keys set from dedicated fields; extraArgs may not name them.
const MANAGED_KEYS = new Set([
  'agent-token',
  'cluster-cidr',
  'cluster-dns',
  'cluster-domain',
  'datastore-cafile',
  'datastore-certfile',
  'datastore-endpoint',
  'datastore-keyfile',
  'disable',
  'egress-selector-mode',
  'flannel-backend',
  'node-ip',
  'node-label',
  'node-name',
  'node-taint',
  'secrets-encryption',
  'server',
  'tls-san',
  'token',
  'token-file',
  'write-kubeconfig-mode',
  // Belong to embedded etcd; with an external datastore they are wrong.
  'cluster-init',
]);

const DNS1123 = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Kubernetes label key: optional DNS prefix + '/' + name of up to 63 characters.
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
const TAINT_EFFECTS = new Set(['NoSchedule', 'PreferNoSchedule', 'NoExecute']);

function assertCidrList(field: string, value: string): void {
  // k3s takes "v4cidr,v6cidr" for dual stack.
  for (const part of value.split(',')) {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(part);
    const ok = m !== null && ((isIPv4(m[1]!) && Number(m[2]) <= 32) || (isIPv6(m[1]!) && Number(m[2]) <= 128));
    if (!ok) throw new RenderInputError(field, `must be a CIDR (or a v4,v6 pair), got ${JSON.stringify(value)}`);
  }
}

function assertLabel(field: string, label: string): void {
  const eq = label.indexOf('=');
  if (eq < 0 || !LABEL_KEY.test(label.slice(0, eq)) || !LABEL_VALUE.test(label.slice(eq + 1))) {
    throw new RenderInputError(field, `must be key=value with a Kubernetes label key and value, got ${JSON.stringify(label)}`);
  }
}

function assertTaint(field: string, taint: string): void {
  const colon = taint.lastIndexOf(':');
  const effect = colon < 0 ? '' : taint.slice(colon + 1);
  const kv = colon < 0 ? '' : taint.slice(0, colon);
  const eq = kv.indexOf('=');
  const key = eq < 0 ? kv : kv.slice(0, eq);
  const value = eq < 0 ? '' : kv.slice(eq + 1);
  if (!TAINT_EFFECTS.has(effect) || !LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) {
    throw new RenderInputError(field, `must be key[=value]:NoSchedule|PreferNoSchedule|NoExecute, got ${JSON.stringify(taint)}`);
  }
}

function validateCommon(input: K3sCommonInput): void {
  if (typeof input.nodeName !== 'string' || !DNS1123.test(input.nodeName)) {
    throw new RenderInputError('nodeName', `must be a lowercase DNS-1123 name, got ${JSON.stringify(input.nodeName)}`);
  }
  (input.nodeIp ?? []).forEach((ip, i) => assertIp(`nodeIp[${i}]`, ip));
  (input.nodeLabels ?? []).forEach((l, i) => assertLabel(`nodeLabels[${i}]`, l));
  (input.nodeTaints ?? []).forEach((t, i) => assertTaint(`nodeTaints[${i}]`, t));
  for (const [key, value] of Object.entries(input.extraArgs ?? {})) {
    const field = `extraArgs.${key}`;
    if (!/^[a-z0-9][a-z0-9-]*$/.test(key)) throw new RenderInputError(field, 'must be a k3s flag long name (lowercase letters, digits, -)');
    if (MANAGED_KEYS.has(key)) throw new RenderInputError(field, 'is set by k8s-ha from its own setting; set it there');
    const values = Array.isArray(value) ? value : [value];
    values.forEach((v) => {
      if (typeof v === 'string') assertNoControlChars(field, v);
      else if (typeof v === 'number' ? !Number.isFinite(v) : typeof v !== 'boolean') throw new RenderInputError(field, 'must be a string, number, boolean or list of strings');
    });
    if (Array.isArray(value) && value.some((v) => typeof v !== 'string')) throw new RenderInputError(field, 'a list must hold strings');
  }
}

function validateServer(input: K3sServerConfigInput): void {
  validateCommon(input);
  if (!(input.token instanceof Secret)) throw new RenderInputError('token', 'must be a Secret');
  if (input.agentToken !== undefined && !(input.agentToken instanceof Secret)) throw new RenderInputError('agentToken', 'must be a Secret');
  if (!(input.datastoreEndpoint instanceof Secret)) throw new RenderInputError('datastoreEndpoint', 'must be a Secret');
  const secrets: [string, Secret | undefined][] = [
    ['token', input.token],
    ['agentToken', input.agentToken],
    ['datastoreEndpoint', input.datastoreEndpoint],
  ];
  // The message names the field only: a secret never reaches an error.
  for (const [field, s] of secrets) if (s !== undefined) assertNoControlChars(field, s.reveal());
  if (input.datastoreCaFile !== undefined) assertPath('datastoreCaFile', input.datastoreCaFile);
  if (input.datastoreCertFile !== undefined) assertPath('datastoreCertFile', input.datastoreCertFile);
  if (input.datastoreKeyFile !== undefined) assertPath('datastoreKeyFile', input.datastoreKeyFile);
  if ((input.datastoreCertFile === undefined) !== (input.datastoreKeyFile === undefined)) {
    throw new RenderInputError('datastoreCertFile', 'datastoreCertFile and datastoreKeyFile go together');
  }
  if (!Array.isArray(input.tlsSan) || input.tlsSan.length === 0) {
    throw new RenderInputError('tlsSan', 'must name the LB/VIP address: agents and users reach the API through it, and adding a SAN after the first start needs a certificate rotation');
  }
  input.tlsSan.forEach((s, i) => assertHost(`tlsSan[${i}]`, s));
  (input.disable ?? []).forEach((d, i) => {
    if (!/^[a-z][a-z0-9-]*$/.test(d)) throw new RenderInputError(`disable[${i}]`, `must be a component name such as servicelb or traefik, got ${JSON.stringify(d)}`);
  });
  if (input.clusterCidr !== undefined) assertCidrList('clusterCidr', input.clusterCidr);
  if (input.serviceCidr !== undefined) assertCidrList('serviceCidr', input.serviceCidr);
  if (input.clusterDns !== undefined) input.clusterDns.split(',').forEach((ip) => assertIp('clusterDns', ip));
  if (input.clusterDomain !== undefined && !isHostname(input.clusterDomain)) throw new RenderInputError('clusterDomain', `must be a DNS domain, got ${JSON.stringify(input.clusterDomain)}`);
  if (input.flannelBackend !== undefined && !/^[a-z][a-z0-9-]*$/.test(input.flannelBackend)) {
    throw new RenderInputError('flannelBackend', `must be a backend name such as vxlan, host-gw, wireguard-native or none, got ${JSON.stringify(input.flannelBackend)}`);
  }
  if (input.egressSelectorMode !== undefined && !['agent', 'cluster', 'pod', 'disabled'].includes(input.egressSelectorMode)) {
    throw new RenderInputError('egressSelectorMode', 'must be agent, cluster, pod or disabled');
  }
}

function validateAgent(input: K3sAgentConfigInput): void {
  validateCommon(input);
  if (!(input.token instanceof Secret)) throw new RenderInputError('token', 'must be a Secret');
  assertNoControlChars('token', input.token.reveal());
  if (typeof input.server !== 'object' || input.server === null) throw new RenderInputError('server', 'must be {host, port} of the API load balancer');
  assertHost('server.host', input.server.host);
  assertPort('server.port', input.server.port);
}

const SECRET_CONFIG_KEYS = ['token', 'agent-token', 'datastore-endpoint'];

/**
 * The secret values in a k3s config.yaml as found on a host (which may be
 * hand-edited or damaged: read leniently, never throws): the tokens, the
 * datastore endpoint and the password inside it, and the passphrase of a
 * `K10<hash>::<user>:<passphrase>` token.
 */
export function k3sConfigSecrets(text: string): string[] {
  const values: string[] = [];
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    doc = undefined;
  }
  if (doc !== null && typeof doc === 'object' && !Array.isArray(doc)) {
    for (const k of SECRET_CONFIG_KEYS) {
      const v = (doc as Record<string, unknown>)[k];
      if (typeof v === 'string' || typeof v === 'number') values.push(String(v));
    }
  } else {
    for (const m of text.matchAll(/^\s*(?:token|agent-token|datastore-endpoint)\s*:\s*(.+?)\s*$/gm)) values.push(m[1]!.replace(/^(["'])(.*)\1$/, '$2'));
  }
  return withInnerSecrets(values);
}

/**
 * Secret values in a k3s EnvironmentFile as found on a host: k3s's install
 * script writes K3S_TOKEN and K3S_DATASTORE_ENDPOINT there.
 */
export function k3sEnvSecrets(text: string): string[] {
  const values: string[] = [];
  for (const m of text.matchAll(/^\s*(?:export\s+)?[A-Z0-9_]*(?:TOKEN|PASS|SECRET|ENDPOINT)[A-Z0-9_]*\s*=\s*(.+?)\s*$/gm)) values.push(m[1]!.replace(/^(["'])(.*)\1$/, '$2'));
  return withInnerSecrets(values);
}

/** The values, plus the password inside a datastore endpoint and the passphrase of a `K10<hash>::<user>:<passphrase>` token. */
function withInnerSecrets(values: string[]): string[] {
  const inner = values.flatMap((v) => {
    const dsnPassword = /^[a-z]+:\/\/[^:/@]*:(.+)@[^@]*$/.exec(v)?.[1];
    const passphrase = /^K10[0-9a-f]*::[^:]*:(.+)$/.exec(v)?.[1];
    return [dsnPassword, passphrase].filter((x): x is string => x !== undefined);
  });
  return [...values, ...inner];
}

/**
 * The config.yaml content as an object (keys are the long flag names), e.g.
 * to compare with a host's parsed file. Secrets are revealed unless
 * `maskSecrets`.
 */
export function k3sConfigObject(input: K3sConfigInput, opts?: SecretRenderOptions): Record<string, K3sArgValue> {
  const c: Record<string, K3sArgValue> = {};
  const list = (key: string, values: string[] | undefined): void => {
    if (values !== undefined && values.length > 0) c[key] = sortedUnique(values);
  };
  if (input.role === 'server') {
    validateServer(input);
    c['token'] = secretText(input.token, opts);
    if (input.agentToken !== undefined) c['agent-token'] = secretText(input.agentToken, opts);
    c['datastore-endpoint'] = secretText(input.datastoreEndpoint, opts);
    if (input.datastoreCaFile !== undefined) c['datastore-cafile'] = input.datastoreCaFile;
    if (input.datastoreCertFile !== undefined) c['datastore-certfile'] = input.datastoreCertFile;
    if (input.datastoreKeyFile !== undefined) c['datastore-keyfile'] = input.datastoreKeyFile;
    list('tls-san', input.tlsSan);
    list('disable', input.disable);
    if (input.clusterCidr !== undefined) c['cluster-cidr'] = input.clusterCidr;
    if (input.serviceCidr !== undefined) c['service-cidr'] = input.serviceCidr;
    if (input.clusterDns !== undefined) c['cluster-dns'] = input.clusterDns;
    if (input.clusterDomain !== undefined) c['cluster-domain'] = input.clusterDomain;
    if (input.flannelBackend !== undefined) c['flannel-backend'] = input.flannelBackend;
    if (input.secretsEncryption === true) c['secrets-encryption'] = true;
    if (input.egressSelectorMode !== undefined) c['egress-selector-mode'] = input.egressSelectorMode;
    // k3s default 0600 too, unless K3S_KUBECONFIG_MODE says otherwise; state
    // it so the admin kubeconfig (cluster-admin) is never world-readable.
    c['write-kubeconfig-mode'] = '0600';
  } else if (input.role === 'agent') {
    validateAgent(input);
    c['server'] = `https://${hostPort(input.server.host, input.server.port)}`;
    c['token'] = secretText(input.token, opts);
  } else {
    throw new RenderInputError('role', "must be 'server' or 'agent'");
  }
  c['node-name'] = input.nodeName;
  // Order matters for node-ip (the first is the primary family): not sorted.
  if (input.nodeIp !== undefined && input.nodeIp.length > 0) c['node-ip'] = [...input.nodeIp];
  list('node-label', input.nodeLabels);
  list('node-taint', input.nodeTaints);
  for (const [key, value] of Object.entries(input.extraArgs ?? {})) {
    // Lists keep their order: for flags like kubelet-arg the last one wins.
    c[key] = Array.isArray(value) ? [...value] : value;
  }
  return c;
}

/**
 * /etc/rancher/k3s/config.yaml. Keys sorted; YAML 1.1 quoting, so a value
 * such as "on" or "0600" stays a string for k3s's YAML 1.1 parser.
 */
export function renderK3sConfig(input: K3sConfigInput, opts?: SecretRenderOptions): string {
  const obj = k3sConfigObject(input, opts);
  const head = managedHeader('#', `k3s ${input.role} configuration (keys are the long flag names).`);
  return head + stringify(obj, { sortMapEntries: true, lineWidth: 0, version: '1.1' });
}

export interface K3sUnitInput {
  role: 'server' | 'agent';
  /** Default /usr/local/bin/k3s. */
  execPath?: string;
}

/** `k3s` for servers, `k3s-agent` for agents, as the install script names them. */
export function k3sServiceName(role: 'server' | 'agent'): string {
  return role === 'server' ? 'k3s' : 'k3s-agent';
}

export function k3sUnitPath(role: 'server' | 'agent'): string {
  return `/etc/systemd/system/${k3sServiceName(role)}.service`;
}

/** The unit's EnvironmentFile. Write it mode 0600 when it holds anything secret. */
export function k3sEnvFilePath(role: 'server' | 'agent'): string {
  return `${k3sUnitPath(role)}.env`;
}

/**
 * The systemd unit, matching what k3s's install script writes (so its
 * uninstall script and docs apply), with no flags on the command line:
 * everything, the token included, is in config.yaml (0600), never in `ps`.
 */
export function renderK3sUnit(input: K3sUnitInput): string {
  if (input.role !== 'server' && input.role !== 'agent') throw new RenderInputError('role', "must be 'server' or 'agent'");
  const execPath = input.execPath ?? K3S_BINARY_PATH;
  assertPath('execPath', execPath);
  const service: UnitEntry[] = [
    // As the install script: the server signals readiness, the agent does not.
    ['Type', input.role === 'server' ? 'notify' : 'exec'],
    ['EnvironmentFile', '-/etc/default/%N'],
    ['EnvironmentFile', '-/etc/sysconfig/%N'],
    ['EnvironmentFile', `-${k3sEnvFilePath(input.role)}`],
    // Containers are children of k3s (containerd shims): restarting k3s
    // must not kill the workloads.
    ['KillMode', 'process'],
    ['Delegate', 'yes'],
    ['LimitNOFILE', '1048576'],
    ['LimitNPROC', 'infinity'],
    ['LimitCORE', 'infinity'],
    ['TasksMax', 'infinity'],
    // A server waits for the datastore and its peers; never time it out.
    ['TimeoutStartSec', '0'],
    ['Restart', 'always'],
    ['RestartSec', '5s'],
    // NetworkManager's cloud setup fights flannel's routes; refuse to start.
    ['ExecStartPre', "/bin/sh -xc '! /usr/bin/systemctl is-enabled --quiet nm-cloud-setup.service 2>/dev/null'"],
    ['ExecStartPre', '-/sbin/modprobe br_netfilter'],
    ['ExecStartPre', '-/sbin/modprobe overlay'],
    ['ExecStart', `${execPath} ${input.role}`],
  ];
  return renderUnit({
    comment: [`k3s ${input.role}. Managed by k8s-ha: local edits are overwritten on the next apply.`, `Settings are in ${K3S_CONFIG_PATH}.`],
    Unit: [
      ['Description', 'Lightweight Kubernetes'],
      ['Documentation', 'https://k3s.io'],
      ['Wants', 'network-online.target'],
      ['After', 'network-online.target'],
    ],
    Service: service,
    Install: [['WantedBy', 'multi-user.target']],
  });
}

/**
 * The unit's environment file, e.g. proxy settings. Nothing k8s-ha needs
 * goes here (config.yaml holds it); an empty file is normal.
 */
export function renderK3sEnvFile(vars: Readonly<Record<string, string | Secret>>, opts?: SecretRenderOptions): string {
  return renderEnvFile(vars, opts);
}

/**
 * Settings that must be identical on every server (FACTS: "cluster-critical
 * settings"), plus `token` and `datastore-endpoint`, which servers must share
 * to be one cluster. Any `disable-*` key counts too.
 */
export const CLUSTER_CRITICAL_KEYS: readonly string[] = [
  'agent-token',
  'cluster-cidr',
  'cluster-dns',
  'cluster-domain',
  'datastore-endpoint',
  'disable',
  'egress-selector-mode',
  'flannel-backend',
  'secrets-encryption',
  'service-cidr',
  'token',
];

const SECRET_KEYS = new Set(['token', 'agent-token', 'datastore-endpoint']);

export type CriticalValue = string | string[] | Secret;

function isCritical(key: string): boolean {
  return CLUSTER_CRITICAL_KEYS.includes(key) || key.startsWith('disable-');
}

/**
 * The cluster-critical settings of a server's config (k3sConfigObject's
 * result, or a host's config.yaml parsed), normalised so that formatting is
 * not a difference: a comma-separated string and a list compare equal, lists
 * are sorted, `false` equals absent (every critical boolean defaults to
 * false). Secret-bearing values come back as Secret.
 */
export function criticalSettings(config: Readonly<Record<string, unknown>>): Record<string, CriticalValue> {
  const out: Record<string, CriticalValue> = {};
  for (const key of Object.keys(config).filter(isCritical).sort(byString)) {
    const raw = config[key];
    if (raw === undefined || raw === null || raw === false || raw === 'false') continue;
    if (SECRET_KEYS.has(key)) {
      out[key] = raw instanceof Secret ? raw : new Secret(String(raw));
    } else if (key === 'disable' || Array.isArray(raw)) {
      const items = (Array.isArray(raw) ? raw : [raw]).flatMap((v) => String(v).split(',')).map((s) => s.trim()).filter((s) => s !== '');
      out[key] = sortedUnique(items);
    } else {
      out[key] = String(raw);
    }
  }
  return out;
}

function sameValue(a: CriticalValue | undefined, b: CriticalValue | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a instanceof Secret || b instanceof Secret) return a instanceof Secret && b instanceof Secret && a.equals(b);
  if (Array.isArray(a) || Array.isArray(b)) return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => v === b[i]);
  return a === b;
}

/** Keys whose critical values differ between two servers' settings, sorted. */
export function diffCriticalSettings(a: Record<string, CriticalValue>, b: Record<string, CriticalValue>): string[] {
  const keys = sortedUnique([...Object.keys(a), ...Object.keys(b)]);
  return keys.filter((k) => !sameValue(a[k], b[k]));
}
