import { parseAllDocuments } from 'yaml';
import type { KubeItem } from '../../src/kube/kubectl-host.js';
import type { ExecResult } from '../../src/transport/host.js';
import { ok } from '../../src/transport/memory.js';
import { sha256 } from './fleet-debian.js';

/**
 * The Kubernetes API as `k3s kubectl` on a ready server sees it, for what
 * k8s-ha does inside the cluster: MetalLB's manifest, k8s-ha's record
 * ConfigMap, the IPAddressPools and L2Advertisements behind MetalLB's
 * validating webhook (FACTS: it refuses them until it is ready), and Nodes.
 * One per fleet: every server answers from the same datastore.
 */
export interface KubeOptions {
  /** Server-side dry runs the webhook refuses after the manifest went on. Default 0. */
  webhookAfter?: number;
  /** Polls of the controller's Available condition that say False first. Default 0. */
  availableAfter?: number;
  /** When set, the webhook denies every pool with this message. */
  deny?: string;
}

const refusedOut = (): ExecResult => ({ code: 1, stdout: '', stderr: 'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?' });

export class FakeKube {
  /** sha256 of the manifest applied last, when one was. */
  manifest: string | null = null;
  controllerImage: string | null = null;
  record: Record<string, string> | null = null;
  readonly objects = new Map<string, KubeItem>();
  dryRuns = 0;
  dryRunsSinceManifest = 0;
  availablePolls = 0;
  /** What changed the API, in order ('manifest', 'record', 'dry-run', 'Kind/name', 'delete name'). */
  readonly timeline: string[] = [];
  readonly opts: Required<Omit<KubeOptions, 'deny'>> & { deny: string };

  constructor(
    opts: KubeOptions = {},
    /** Node name -> Ready (from the k3s model); undefined when not registered. */
    private readonly nodeReady: (name: string) => boolean | undefined = () => undefined,
  ) {
    this.opts = { webhookAfter: opts.webhookAfter ?? 0, availableAfter: opts.availableAfter ?? 0, deny: opts.deny ?? '' };
  }

  get webhookReady(): boolean {
    return this.manifest !== null && this.dryRunsSinceManifest > this.opts.webhookAfter;
  }

  /** What a node's kubelet reports (set by the fleet: the version of the k3s binary its k3s last started from). */
  kubeletVersion: (name: string) => string = () => 'v1.31.4+k3s1';
  /** Names of the nodes whose k3s runs and was admitted (set by the fleet from its k3s model). */
  listNodes: () => string[] = () => [];
  /** Node objects deleted (`kubectl delete node`), in order. */
  readonly deletedNodes: string[] = [];
  /** Deleted and not registered again since (a kubelet registers when it starts). */
  readonly #gone = new Set<string>();
  /** Called for each deleted Node (the k3s model deletes its node-password Secret). */
  onNodeDeleted: (name: string) => void = () => {};
  /** Whether kube-system `NAME.node-password.k3s` exists (the k3s model keeps it in the kine table). */
  hasNodePassword: (name: string) => boolean = () => false;
  /** Nodes cordoned (spec.unschedulable) and their annotations. */
  readonly cordoned = new Set<string>();
  readonly annotations = new Map<string, Record<string, string>>();

  /** A kubelet starting on `name`: its Node is registered again if it was deleted. */
  registering(name: string): void {
    this.#gone.delete(name);
  }

  /** Deleted, and its k3s not started again since (a running kubelet does not re-register). */
  deleted(name: string): boolean {
    return this.#gone.has(name);
  }

  /** Node objects in the datastore: registered once, kept (NotReady) when the machine goes, until deleted. */
  readonly #objects = new Set<string>();

  #nodes(): string[] {
    for (const n of this.listNodes()) if (!this.#gone.has(n)) this.#objects.add(n);
    return [...this.#objects].sort(); // the API lists by name
  }

  #ready(n: string): boolean {
    return this.listNodes().includes(n) && this.nodeReady(n) === true;
  }

  /** Answer one `k3s kubectl ...` command (the API is up). */
  kubectl(raw: string, stdin: string): ExecResult {
    // Global flags k8s-ha passes (k3s-health.ts kubectlArgs) say nothing to the model.
    const text = raw.replace(/ --kubeconfig \S+/, '').replace(/ --request-timeout=\S+/, '');
    if (/ kubectl get nodes -o name$/.test(text)) return ok(this.#nodes().map((n) => `node/${n}\n`).join(''));
    if (/ kubectl get nodes -o json$/.test(text)) {
      const items = this.#nodes().map((n) => ({
        metadata: { name: n, annotations: this.annotations.get(n) ?? {} },
        spec: this.cordoned.has(n) ? { unschedulable: true } : {},
        status: { conditions: [{ type: 'Ready', status: this.#ready(n) ? 'True' : 'False' }], nodeInfo: { kubeletVersion: this.kubeletVersion(n) } },
      }));
      return ok(JSON.stringify({ kind: 'List', items }));
    }
    const delNodes = / kubectl delete node (.+)$/.exec(text);
    if (delNodes) {
      for (const n of delNodes[1]!.split(' ').filter((w) => !w.startsWith('--'))) {
        if (!this.#nodes().includes(n) && !text.includes('--ignore-not-found')) return { code: 1, stdout: '', stderr: `Error from server (NotFound): nodes "${n}" not found` };
        if (!this.#nodes().includes(n)) continue;
        this.deletedNodes.push(n);
        this.#gone.add(n);
        this.#objects.delete(n);
        this.cordoned.delete(n);
        this.annotations.delete(n);
        this.timeline.push(`delete node ${n}`);
        // k3s's node-password controller deletes the secret with the Node.
        this.onNodeDeleted(n);
      }
      return ok();
    }
    const secret = / kubectl (get|delete) secret -n kube-system (\S+)\.node-password\.k3s/.exec(text);
    if (secret) {
      const n = secret[2]!;
      if (secret[1] === 'get') return ok(this.hasNodePassword(n) ? `secret/${n}.node-password.k3s\n` : '');
      if (this.hasNodePassword(n)) {
        this.onNodeDeleted(n);
        this.timeline.push(`delete secret ${n}`);
      }
      return ok();
    }
    const verb = / kubectl (cordon|uncordon|drain|annotate) (?:--overwrite )?(?:node )?(\S+)(.*)$/.exec(text);
    if (verb) {
      const [, v, n = '', args = ''] = verb;
      if (!this.#nodes().includes(n)) return { code: 1, stdout: '', stderr: `Error from server (NotFound): nodes "${n}" not found` };
      if (v === 'cordon' || v === 'drain') this.cordoned.add(n);
      if (v === 'uncordon') this.cordoned.delete(n);
      if (v === 'annotate') {
        const [k, val] = args.trim().split('=');
        const a = { ...(this.annotations.get(n) ?? {}) };
        if (k!.endsWith('-')) delete a[k!.slice(0, -1)];
        else a[k!] = val ?? '';
        this.annotations.set(n, a);
        return ok();
      }
      this.timeline.push(`${v} ${n}`);
      return ok();
    }
    const node = /get node (\S+) /.exec(text);
    if (node) {
      const n = node[1]!;
      return this.#nodes().includes(n) ? ok(this.#ready(n) ? 'True' : 'False') : { code: 1, stdout: '', stderr: `Error from server (NotFound): nodes "${n}" not found` };
    }
    if (text.includes('configmap/k8s-ha-metallb deployment/controller')) {
      const items: KubeItem[] = [];
      if (this.record) items.push({ kind: 'ConfigMap', metadata: { name: 'k8s-ha-metallb' }, data: this.record });
      if (this.controllerImage) items.push({ kind: 'Deployment', metadata: { name: 'controller' }, spec: { template: { spec: { containers: [{ name: 'controller', image: this.controllerImage }] } } } });
      return ok(items.length ? JSON.stringify({ kind: 'List', items }) : '');
    }
    if (text.includes('ipaddresspools.metallb.io,l2advertisements.metallb.io')) {
      if (!this.manifest) return { code: 1, stdout: '', stderr: 'error: the server doesn\'t have a resource type "ipaddresspools"' };
      return ok(JSON.stringify({ kind: 'List', items: [...this.objects.values()] }));
    }
    if (text.includes('deployment/controller -o')) {
      if (!this.manifest) return { code: 1, stdout: '', stderr: 'Error from server (NotFound): deployments.apps "controller" not found' };
      this.availablePolls++;
      return ok(this.availablePolls > this.opts.availableAfter ? 'True' : 'False');
    }
    if (text.includes('--dry-run=server')) {
      this.dryRuns++;
      if (this.manifest) this.dryRunsSinceManifest++;
      this.timeline.push('dry-run');
      if (this.opts.deny) return { code: 1, stdout: '', stderr: `Error from server (Forbidden): admission webhook "ipaddresspoolvalidationwebhook.metallb.io" denied the request: ${this.opts.deny}` };
      return this.webhookReady ? ok() : { code: 1, stdout: '', stderr: 'Internal error occurred: failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": dial tcp 10.43.0.9:443: connect: connection refused' };
    }
    if (/ apply --server-side --force-conflicts /.test(text)) return this.apply(stdin);
    const del = /delete -n metallb-system (ipaddresspools|l2advertisements)\.metallb\.io\/(\S+)/.exec(text);
    if (del) {
      this.objects.delete(`${del[1] === 'ipaddresspools' ? 'IPAddressPool' : 'L2Advertisement'}/${del[2]}`);
      this.timeline.push(`delete ${del[2]}`);
      return ok();
    }
    return { code: 1, stdout: '', stderr: `simulated API: unexpected kubectl ${text}` };
  }

  apply(stdin: string): ExecResult {
    const docs = parseAllDocuments(stdin).map((d) => d.toJS() as KubeItem | null).filter((d): d is KubeItem => !!d);
    // MetalLB's release manifest: the Deployment named controller in metallb-system.
    const controller = docs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'controller');
    if (controller) {
      this.manifest = sha256(stdin);
      this.dryRunsSinceManifest = 0;
      const containers = (controller.spec as { template?: { spec?: { containers?: { name: string; image: string }[] } } }).template?.spec?.containers ?? [];
      this.controllerImage = containers.find((c) => c.name === 'controller')?.image ?? null;
      this.timeline.push('manifest');
      return ok();
    }
    for (const o of docs) {
      if (o.kind === 'ConfigMap') {
        this.record = o.data ?? {};
        this.timeline.push('record');
        continue;
      }
      if (!this.manifest) return { code: 1, stdout: '', stderr: `error: resource mapping not found for name: "${o.metadata.name}": no matches for kind "${o.kind}" in version "metallb.io/v1beta1"` };
      if (this.opts.deny) return { code: 1, stdout: '', stderr: `Error from server (Forbidden): admission webhook "ipaddresspoolvalidationwebhook.metallb.io" denied the request: ${this.opts.deny}` };
      if (!this.webhookReady) return { code: 1, stdout: '', stderr: 'failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": no endpoints available for service "metallb-webhook-service"' };
      // The API server fills in defaults k8s-ha never sets.
      const spec = o.kind === 'IPAddressPool' ? { avoidBuggyIPs: false, ...o.spec } : { ...o.spec };
      this.objects.set(`${o.kind}/${o.metadata.name}`, { ...o, spec });
      this.timeline.push(`${o.kind}/${o.metadata.name}`);
    }
    return ok();
  }

  static refused = refusedOut;
}
