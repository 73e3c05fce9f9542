import type { ExecResult, Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';

/** Where k3s puts its binary and its admin kubeconfig (FACTS: k3s hosts). */
const K3S = '/usr/local/bin/k3s';
const ADMIN_KUBECONFIG = '/etc/rancher/k3s/k3s.yaml';

/**
 * `k3s kubectl` run on a server over the host transport. The phases that work
 * inside the cluster (MetalLB, verify, status) use it instead of a network
 * client because it needs nothing the cluster file does not already give:
 * k3s ships kubectl and defaults it to the admin kubeconfig
 * (/etc/rancher/k3s/k3s.yaml, root-only, hence sudo), it works before the
 * load balancer is proven, and the in-memory host answers the same command
 * texts in engine tests. The lab's k3s has the same `kubectl` subcommand.
 */
export interface Kubectl {
  /** The server it runs on. */
  readonly host: string;
  /** `/usr/local/bin/k3s kubectl --kubeconfig /etc/rancher/k3s/k3s.yaml ARGS`; throws CommandError on failure unless allowFailure. */
  run(args: readonly string[], opts?: KubectlRunOptions): Promise<ExecResult>;
  /** `k3s kubectl ARGS -o json`, parsed; a List's `items` for list calls. */
  json<T>(args: readonly string[], opts?: Omit<KubectlRunOptions, 'allowFailure'>): Promise<T>;
}

export interface KubectlRunOptions {
  /** Fed to kubectl's stdin (`-f -`). Default: none. */
  stdin?: string;
  /** Default: 60000. */
  timeoutMs?: number;
  /** Return a failed result instead of throwing. Default: false. */
  allowFailure?: boolean;
}

export function hostKubectl(host: Host): Kubectl {
  const run = (args: readonly string[], o: KubectlRunOptions = {}): Promise<ExecResult> =>
    host.exec(sh`${K3S} kubectl --kubeconfig ${ADMIN_KUBECONFIG} ${args}`, {
      timeoutMs: o.timeoutMs ?? 60_000,
      allowFailure: o.allowFailure ?? false,
      ...(o.stdin !== undefined ? { stdin: o.stdin } : {}),
    });
  return {
    host: host.name,
    run,
    async json<T>(args: readonly string[], o: Omit<KubectlRunOptions, 'allowFailure'> = {}): Promise<T> {
      const r = await run([...args, '-o', 'json'], o);
      // `get --ignore-not-found` prints nothing when nothing matched.
      const text = r.stdout.trim();
      if (!text) return { apiVersion: 'v1', kind: 'List', items: [] } as T;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new Error(`${host.name}: \`k3s kubectl ${args.join(' ')} -o json\` printed something that is not JSON: ${text.slice(0, 200)}`);
      }
    },
  };
}

/** The fields of a Kubernetes object the callers here read. */
export interface KubeItem {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  data?: Record<string, string>;
}

export interface KubeList<T = KubeItem> {
  items: T[];
}

/** True when kubectl failed because the API (or k3s) is not there, rather than for the request itself. */
export function apiUnavailable(r: ExecResult): boolean {
  if (r.code === 127) return true;
  if (/connection refused|was refused|no such host|i\/o timeout|Unable to connect to the server|k3s: (command )?not found|ServiceUnavailable|the server is currently unable/i.test(r.stderr)) return true;
  // The API server answers but its datastore does not (kine's errors passed through): a
  // datastore being recovered, e.g. a Galera cluster after a full outage, before its k3s
  // servers are back. Not the object's fault either.
  return /invalid connection|WSREP has not yet prepared|Error 1047|context deadline exceeded|Timeout: request did not complete|the server was unable to return a response|etcdserver: request timed out/i.test(r.stderr);
}
