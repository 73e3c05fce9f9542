import { parse, stringify } from 'yaml';

/**
 * Kubeconfig files as data: k3s's admin kubeconfig turned into the user's
 * (FACTS: it points at 127.0.0.1:6443; users need the LB or VIP), and a
 * merge into an existing kubeconfig that replaces only the entries of one
 * cluster. Pure: no I/O.
 */

export interface NamedCluster {
  name: string;
  cluster: { server: string; 'certificate-authority-data'?: string; 'certificate-authority'?: string; [k: string]: unknown };
}
export interface NamedUser {
  name: string;
  user: { 'client-certificate-data'?: string; 'client-key-data'?: string; token?: string; [k: string]: unknown };
}
export interface NamedContext {
  name: string;
  context: { cluster: string; user: string; namespace?: string; [k: string]: unknown };
}

export interface Kubeconfig {
  apiVersion: 'v1';
  kind: 'Config';
  clusters: NamedCluster[];
  users: NamedUser[];
  contexts: NamedContext[];
  'current-context'?: string;
  preferences?: Record<string, unknown>;
  [k: string]: unknown;
}

export class KubeconfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KubeconfigError';
  }
}

function list<T>(v: unknown, what: string, where: string): T[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new KubeconfigError(`${where}: ${what} is not a list`);
  return v as T[];
}

/** Parse a kubeconfig; an empty text is an empty config. */
export function parseKubeconfig(text: string, where = 'kubeconfig'): Kubeconfig {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new KubeconfigError(`${where} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new KubeconfigError(`${where} is not a kubeconfig (not a mapping)`);
  const o = raw as Record<string, unknown>;
  return {
    ...o,
    apiVersion: 'v1',
    kind: 'Config',
    clusters: list<NamedCluster>(o.clusters, 'clusters', where),
    users: list<NamedUser>(o.users, 'users', where),
    contexts: list<NamedContext>(o.contexts, 'contexts', where),
  };
}

export function renderKubeconfig(k: Kubeconfig): string {
  return stringify(k, { lineWidth: 0 });
}

/**
 * k3s's admin kubeconfig (one cluster, user and context, all named
 * `default`, server https://127.0.0.1:6443) as the user's: server set to
 * the API URL (LB or VIP), everything named after the cluster.
 */
export function userKubeconfig(admin: Kubeconfig, name: string, server: string): Kubeconfig {
  const cur = admin.contexts.find((c) => c.name === admin['current-context']) ?? admin.contexts[0];
  const cluster = admin.clusters.find((c) => c.name === cur?.context.cluster) ?? admin.clusters[0];
  const user = admin.users.find((u) => u.name === cur?.context.user) ?? admin.users[0];
  if (!cluster || !user) throw new KubeconfigError('the admin kubeconfig has no cluster or no user: is k3s fully started on that server?');
  if (!cluster.cluster['certificate-authority-data']) throw new KubeconfigError('the admin kubeconfig carries no certificate-authority-data');
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { ...cluster.cluster, server } }],
    users: [{ name, user: { ...user.user } }],
    contexts: [{ name, context: { cluster: name, user: name } }],
    'current-context': name,
    preferences: {},
  };
}

/**
 * Merge `incoming` (one cluster, user and context) into `existing`: entries
 * of the same names are replaced in place, new ones appended, every other
 * entry is left exactly as it was. The current context switches to the
 * incoming one only when `setCurrent` (default) or when none was set.
 */
export function mergeKubeconfig(existing: Kubeconfig, incoming: Kubeconfig, setCurrent = true): Kubeconfig {
  const put = <T extends { name: string }>(into: T[], items: T[]): T[] => {
    const out = [...into];
    for (const item of items) {
      const i = out.findIndex((x) => x.name === item.name);
      if (i >= 0) out[i] = item;
      else out.push(item);
    }
    return out;
  };
  const merged: Kubeconfig = {
    ...existing,
    apiVersion: 'v1',
    kind: 'Config',
    clusters: put(existing.clusters, incoming.clusters),
    users: put(existing.users, incoming.users),
    contexts: put(existing.contexts, incoming.contexts),
  };
  if (setCurrent || !existing['current-context']) merged['current-context'] = incoming['current-context'];
  return merged;
}

/** The credentials a client needs from a kubeconfig's current context. */
export interface KubeCredentials {
  server: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export function credentials(k: Kubeconfig, context?: string): KubeCredentials {
  const name = context ?? k['current-context'] ?? k.contexts[0]?.name;
  const ctx = k.contexts.find((c) => c.name === name);
  if (!ctx) throw new KubeconfigError(`no context ${name ?? '(none)'} in the kubeconfig`);
  const cluster = k.clusters.find((c) => c.name === ctx.context.cluster);
  const user = k.users.find((u) => u.name === ctx.context.user);
  if (!cluster || !user) throw new KubeconfigError(`context ${name} names a cluster or user the kubeconfig does not hold`);
  const b64 = (v: unknown, what: string): Buffer => {
    if (typeof v !== 'string' || !v) throw new KubeconfigError(`the kubeconfig's ${what} is missing (k8s-ha uses embedded client certificates, as k3s writes them)`);
    return Buffer.from(v, 'base64');
  };
  return {
    server: cluster.cluster.server,
    ca: b64(cluster.cluster['certificate-authority-data'], 'certificate-authority-data'),
    cert: b64(user.user['client-certificate-data'], 'client-certificate-data'),
    key: b64(user.user['client-key-data'], 'client-key-data'),
  };
}
