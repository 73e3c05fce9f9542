import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { KubeCredentials } from './kubeconfig.js';

/**
 * A tiny Kubernetes client over node:https with the admin kubeconfig's
 * client certificate: no kubectl needed on the machine running k8s-ha. It
 * goes through the API URL the kubeconfig names (the LB or VIP).
 */

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface NodeInfo {
  name: string;
  ready: boolean;
  roles: string[];
  addresses: string[];
}

export class KubeApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number | null,
    readonly reason: string,
    readonly server: string,
  ) {
    super(`${method} ${server}${path}: ${status === null ? reason : `HTTP ${status}: ${reason}`}`);
    this.name = 'KubeApiError';
  }
}

export interface KubeClientOptions {
  /** One request's limit. Default 15 s. */
  timeoutMs?: number;
  /** Use a fresh TLS connection per request (no keep-alive), e.g. to exercise the LB's balancing. Default false. */
  freshConnections?: boolean;
}

export class KubeClient {
  private readonly url: URL;
  constructor(
    readonly creds: KubeCredentials,
    private readonly opts: KubeClientOptions = {},
  ) {
    this.url = new URL(creds.server);
  }

  /** The same credentials against another server URL (e.g. one server directly). */
  withServer(server: string): KubeClient {
    return new KubeClient({ ...this.creds, server }, this.opts);
  }

  async request<T = unknown>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const options: RequestOptions = {
      method,
      host: this.url.hostname.replace(/^\[|\]$/g, ''),
      port: this.url.port || 443,
      path,
      ca: this.creds.ca,
      cert: this.creds.cert,
      key: this.creds.key,
      // The API's certificate names the tls-san entries; the LB address is one.
      servername: this.url.hostname.match(/^[\d.]+$|:/) ? undefined : this.url.hostname,
      headers: { accept: 'application/json', ...(payload ? { 'content-type': contentType, 'content-length': payload.length } : {}) },
      timeout: this.opts.timeoutMs ?? 15_000,
      ...(this.opts.freshConnections ? { agent: false } : {}),
    };
    return new Promise<T>((resolve, reject) => {
      const req = httpsRequest(options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(new KubeApiError(method, path, null, e.message, this.creds.server)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) {
            let reason = text.trim().slice(0, 300);
            try {
              const st = JSON.parse(text) as { message?: string };
              if (st.message) reason = st.message;
            } catch {
              // not a Status object: keep the text
            }
            reject(new KubeApiError(method, path, status, reason, this.creds.server));
            return;
          }
          try {
            resolve((text && (res.headers['content-type'] ?? '').includes('json') ? JSON.parse(text) : text) as T);
          } catch (e) {
            reject(new KubeApiError(method, path, status, `unreadable answer: ${(e as Error).message}`, this.creds.server));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${(this.opts.timeoutMs ?? 15_000) / 1000} s`)));
      req.on('error', (e) => reject(new KubeApiError(method, path, null, e.message, this.creds.server)));
      req.end(payload);
    });
  }

  /** `/readyz`, `/version` and the like as text. */
  raw(path: string): Promise<string> {
    return this.request<string>('GET', path).then((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
  }

  async nodes(): Promise<NodeInfo[]> {
    const list = await this.request<{ items: NodeJson[] }>('GET', '/api/v1/nodes');
    return list.items.map(nodeInfo).sort((a, b) => a.name.localeCompare(b.name));
  }

  get<T extends KubeObject = KubeObject>(apiPath: string): Promise<T> {
    return this.request<T>('GET', apiPath);
  }

  /** POST the object to its collection, e.g. create(obj) for a ConfigMap goes to /api/v1/namespaces/NS/configmaps. */
  create<T extends KubeObject>(obj: T): Promise<T> {
    return this.request<T>('POST', collectionPath(obj), obj);
  }

  /** Delete by object; a missing object is not an error. */
  async delete(obj: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): Promise<void> {
    try {
      await this.request('DELETE', `${collectionPath(obj)}/${encodeURIComponent(obj.metadata.name)}`);
    } catch (e) {
      if (!(e instanceof KubeApiError && e.status === 404)) throw e;
    }
  }

  /** Polls until at least `count` nodes are Ready (bounded); the error lists what it saw last. */
  async waitForReadyNodes(count: number, opts: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {}): Promise<NodeInfo[]> {
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    for (;;) {
      if (opts.signal?.aborted) throw new Error('interrupted');
      try {
        const nodes = await this.nodes();
        if (nodes.filter((n) => n.ready).length >= count) return nodes;
        last = nodes.length ? nodes.map((n) => `${n.name} ${n.ready ? 'Ready' : 'NotReady'}`).join(', ') : 'no nodes registered';
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() >= deadline) throw new Error(`${this.creds.server}: fewer than ${count} Ready nodes after ${timeoutMs / 1000} s; last seen: ${last}`);
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 2000));
    }
  }
}

interface NodeJson {
  metadata: { name: string; labels?: Record<string, string> };
  status?: { conditions?: { type: string; status: string }[]; addresses?: { type: string; address: string }[] };
}

function nodeInfo(n: NodeJson): NodeInfo {
  const labels = n.metadata.labels ?? {};
  const roles = Object.keys(labels)
    .filter((k) => k.startsWith('node-role.kubernetes.io/'))
    .map((k) => k.slice('node-role.kubernetes.io/'.length))
    .sort();
  return {
    name: n.metadata.name,
    ready: (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    roles,
    addresses: (n.status?.addresses ?? []).map((a) => a.address),
  };
}

// Enough of the API's naming for the objects k8s-ha creates; a CRD's plural is its lowercased kind + s.
const PLURALS: Record<string, string> = { Endpoints: 'endpoints', Ingress: 'ingresses', NetworkPolicy: 'networkpolicies', IPAddressPool: 'ipaddresspools', L2Advertisement: 'l2advertisements' };
const CLUSTER_SCOPED = new Set(['Namespace', 'Node', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume', 'StorageClass', 'PriorityClass', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']);

export function collectionPath(obj: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): string {
  const base = obj.apiVersion.includes('/') ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
  const plural = PLURALS[obj.kind] ?? `${obj.kind.toLowerCase()}${obj.kind.endsWith('s') ? 'es' : 's'}`;
  if (CLUSTER_SCOPED.has(obj.kind)) return `${base}/${plural}`;
  return `${base}/namespaces/${encodeURIComponent(obj.metadata.namespace ?? 'default')}/${plural}`;
}
